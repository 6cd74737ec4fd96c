// Python binding of Encoder: construction starts the native thread; close/flush release the GIL, and
// so do the live controls (atomics the encoder thread reads), callable from any thread.
#include "core/Encoder.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/Error.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

struct EncoderHandle {
  std::shared_ptr<Encoder> encoder;
  CodecOptions options;
};

void close_encoder(EncoderHandle& h) {
  {
    GilRelease release;  // joins the encoder thread, which never needs the GIL
    h.encoder->close();
  }
  h.encoder->check();  // an error the thread stashed before closing is not lost
}

py::dict output_stats(const EncoderHandle& h, const std::string& codec) {
  const CodecKind kind = parse_codec(codec);
  const OutputCounters& c = h.encoder->output_counters(kind);
  py::dict stats;
  stats["enabled"] = h.encoder->output_enabled(kind);
  stats["frames_encoded"] = c.frames_encoded.load();
  stats["keyframes"] = c.keyframes.load();
  stats["bytes"] = c.bytes.load();
  stats["frames_dropped"] = c.frames_dropped.load();
  return stats;
}

}  // namespace

void init_encoder(py::module_& m) {
  py::class_<EncoderHandle>(m, "Encoder")
      .def(py::init([](std::shared_ptr<FrameRing> ring, const std::string& codec, int quality,
                       const std::string& subsampling, int64_t queue_capacity,
                       const std::vector<std::string>& extra_codecs, int64_t bitrate, int vp8_speed, int vp8_threads,
                       int keyframe_interval, const std::string& scheduling, int jpeg_threads) {
             RE_CHECK(ring != nullptr, InvalidArgument, "an encoder needs a FrameRing, got None");
             CodecOptions options{
                 parse_codec(codec), quality,          parse_subsampling(subsampling), bitrate, vp8_speed,
                 vp8_threads,        keyframe_interval};
             options.jpeg_threads = jpeg_threads;
             std::vector<CodecKind> extra;
             for (const std::string& name : extra_codecs) extra.push_back(parse_codec(name));
             const ThreadPolicy policy = parse_thread_policy(scheduling);
             return EncoderHandle{std::make_shared<Encoder>(std::move(ring), options, queue_capacity, extra, policy),
                                  options};
           }),
           py::arg("ring"), py::arg("codec") = "jpeg", py::arg("quality") = 90, py::arg("subsampling") = "420",
           py::arg("queue_capacity") = 8, py::kw_only(), py::arg("extra_codecs") = std::vector<std::string>{},
           py::arg("bitrate") = CodecOptions{}.bitrate_bps, py::arg("vp8_speed") = CodecOptions{}.vp8_speed,
           py::arg("vp8_threads") = CodecOptions{}.vp8_threads,
           py::arg("keyframe_interval") = CodecOptions{}.keyframe_interval, py::arg("scheduling") = "batch",
           py::arg("jpeg_threads") = CodecOptions{}.jpeg_threads)
      .def_property_readonly("codec", [](const EncoderHandle& h) { return codec_name(h.options.kind); })
      .def_property_readonly("codecs",
                             [](const EncoderHandle& h) {
                               std::vector<std::string> names;
                               for (CodecKind kind : h.encoder->codecs()) names.emplace_back(codec_name(kind));
                               return names;
                             })
      .def_property_readonly("quality", [](const EncoderHandle& h) { return h.options.quality; })
      .def_property_readonly("scheduling",
                             [](const EncoderHandle& h) { return thread_policy_name(h.encoder->thread_policy()); })
      .def_property_readonly("scheduling_error",
                             [](const EncoderHandle& h) { return h.encoder->thread_policy_error(); })
      .def_property_readonly("subsampling",
                             [](const EncoderHandle& h) { return subsampling_name(h.options.subsampling); })
      .def_property_readonly("vp8_speed", [](const EncoderHandle& h) { return h.options.vp8_speed; })
      .def_property_readonly("vp8_threads", [](const EncoderHandle& h) { return h.options.vp8_threads; })
      .def_property_readonly("keyframe_interval", [](const EncoderHandle& h) { return h.options.keyframe_interval; })
      .def_property_readonly("jpeg_threads", [](const EncoderHandle& h) { return h.options.jpeg_threads; })
      .def_property_readonly("queue", [](const EncoderHandle& h) { return h.encoder->queue(); })
      .def(
          "queue_for",
          [](const EncoderHandle& h, const std::string& codec) { return h.encoder->queue_for(parse_codec(codec)); },
          py::arg("codec"))
      .def_property_readonly("running", [](const EncoderHandle& h) { return h.encoder->running(); })
      .def(
          "set_output_enabled",
          [](EncoderHandle& h, const std::string& codec, bool enabled) {
            const CodecKind kind = parse_codec(codec);
            GilRelease release;  // an atomic and a wake-up: never waits for the encoder thread
            h.encoder->set_output_enabled(kind, enabled);
          },
          py::arg("codec"), py::arg("enabled"))
      .def(
          "output_enabled",
          [](const EncoderHandle& h, const std::string& codec) {
            return h.encoder->output_enabled(parse_codec(codec));
          },
          py::arg("codec"))
      .def("output_stats", &output_stats, py::arg("codec"))
      .def(
          "request_keyframe", [](EncoderHandle& h) { h.encoder->request_keyframe(); }, py::call_guard<GilRelease>())
      .def(
          "set_bitrate", [](EncoderHandle& h, int64_t bps) { h.encoder->set_bitrate(bps); }, py::arg("bps"),
          py::call_guard<GilRelease>())
      .def_property_readonly("bitrate", [](const EncoderHandle& h) { return h.encoder->bitrate(); })
      .def(
          "inject_error_for_tests",
          [](EncoderHandle& h, const py::object& codec) {
            const CodecKind kind = codec.is_none() ? h.encoder->codec() : parse_codec(codec.cast<std::string>());
            h.encoder->inject_error_for_tests(kind);
          },
          py::arg("codec") = py::none())
      .def(
          "flush",
          [](EncoderHandle& h, const py::object& timeout) {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            GilRelease release;  // waits for the encoder thread to drain the ring
            h.encoder->flush(timeout_ns);
          },
          py::arg("timeout") = py::none())
      .def("check", [](EncoderHandle& h) { h.encoder->check(); })
      .def("close", &close_encoder)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](EncoderHandle& h, const py::args&) { close_encoder(h); })
      .def("__repr__", [](const EncoderHandle& h) {
        std::string codecs;
        for (CodecKind kind : h.encoder->codecs()) codecs += std::string(codecs.empty() ? "" : "+") + codec_name(kind);
        return std::string("<Encoder ") + codecs + (h.encoder->running() ? " running>" : " closed>");
      });
}

}  // namespace reactor::bindings
