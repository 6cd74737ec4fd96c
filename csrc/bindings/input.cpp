// Python binding of InputRing, InputFrame and Decoder: reads hand out read-only zero-copy numpy views
// of held slots; every wait and copy runs without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/Decoder.h"
#include "core/Error.h"
#include "core/InputRing.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

// What read() and current() return: the metadata, and a read-only (height, width, 3) view of the
// slot whose base (a capsule) owns a reference to the ring, so the memory outlives the ring's owner.
struct InputFrameHandle {
  InputMeta meta;
  py::object array;
};

void delete_ring_ref(void* p) { delete static_cast<std::shared_ptr<InputRing>*>(p); }

py::object make_frame(const std::shared_ptr<InputRing>& ring, const InputRead& read) {
  py::capsule owner(new std::shared_ptr<InputRing>(ring), &delete_ring_ref);
  const auto h = static_cast<py::ssize_t>(read.meta.height), w = static_cast<py::ssize_t>(read.meta.width);
  py::array view(py::dtype::of<uint8_t>(), {h, w, py::ssize_t{3}}, {w * 3, py::ssize_t{3}, py::ssize_t{1}}, read.data,
                 owner);
  // The producer may reuse the slot once released; nobody may write into it through the view.
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return py::cast(InputFrameHandle{read.meta, std::move(view)});
}

std::string shape_text(const py::buffer_info& info) {
  std::string text = "(";
  for (size_t i = 0; i < info.shape.size(); ++i) text += (i ? ", " : "") + std::to_string(info.shape[i]);
  return text + (info.shape.size() == 1 ? ",)" : ")");
}

py::dict ring_stats(const InputRing& ring) {
  const InputCounters& c = ring.counters();
  py::dict out;
  out["frames_in"] = c.frames_in.load();
  out["frames_read"] = c.frames_read.load();
  out["frames_skipped"] = c.frames_skipped.load();
  out["frames_dropped"] = c.frames_dropped.load();
  out["frames_refused"] = c.frames_refused.load();
  out["ready"] = ring.ready_count();
  out["held"] = ring.held_count();
  py::dict latency;
  for (int i = 0; i < static_cast<int>(InputLatency::Count); ++i) {
    latency[InputRing::kLatencyNames[i]] = histogram_dict(ring.histogram(static_cast<InputLatency>(i)).snapshot());
  }
  out["latency"] = latency;
  return out;
}

py::dict decoder_stats(const Decoder& decoder) {
  const DecoderCounters& c = decoder.counters();
  py::dict out;
  out["packets_in"] = c.packets_in.load();
  out["packets_dropped"] = c.packets_dropped.load();
  out["packets_refused"] = c.packets_refused.load();
  out["frames_decoded"] = c.frames_decoded.load();
  out["frames_discarded"] = c.frames_discarded.load();
  out["frames_refused"] = c.frames_refused.load();
  out["decode_errors"] = c.decode_errors.load();
  out["resolution_changes"] = c.resolution_changes.load();
  out["keyframe_requests"] = c.keyframe_requests.load();
  out["queued"] = decoder.queued();
  py::dict latency;
  for (int i = 0; i < static_cast<int>(DecoderLatency::Count); ++i) {
    latency[Decoder::kLatencyNames[i]] = histogram_dict(decoder.histogram(static_cast<DecoderLatency>(i)).snapshot());
  }
  out["latency"] = latency;
  return out;
}

int64_t optional_time(int64_t ns, const char* name) {
  RE_CHECK(ns >= -1, InvalidArgument, name, " must be >= 0 ns (or -1: now), got ", ns);
  return ns;
}

struct DecoderHandle {
  std::shared_ptr<Decoder> decoder;
};

}  // namespace

void init_input(py::module_& m) {
  py::class_<InputFrameHandle>(m, "InputFrame")
      .def_property_readonly("array", [](const InputFrameHandle& f) { return f.array; })
      .def_property_readonly("index", [](const InputFrameHandle& f) { return f.meta.index; })
      .def_property_readonly("width", [](const InputFrameHandle& f) { return f.meta.width; })
      .def_property_readonly("height", [](const InputFrameHandle& f) { return f.meta.height; })
      .def_property_readonly("capture_ns", [](const InputFrameHandle& f) { return f.meta.capture_ns; })
      .def_property_readonly("arrival_ns", [](const InputFrameHandle& f) { return f.meta.arrival_ns; })
      .def_property_readonly("ready_ns", [](const InputFrameHandle& f) { return f.meta.ready_ns; })
      .def_property_readonly("keyframe", [](const InputFrameHandle& f) { return f.meta.keyframe; })
      .def("__repr__", [](const InputFrameHandle& f) {
        return "<InputFrame " + std::to_string(f.meta.index) + " " + std::to_string(f.meta.width) + "x" +
               std::to_string(f.meta.height) + (f.meta.keyframe ? " key>" : ">");
      });

  py::class_<InputRing, std::shared_ptr<InputRing>>(m, "InputRing")
      .def(py::init([](int64_t slots, int64_t max_width, int64_t max_height) {
             GilRelease release;  // mapping and prefaulting the slots
             return std::make_shared<InputRing>(slots, max_width, max_height);
           }),
           py::arg("slots"), py::arg("max_width"), py::arg("max_height"))
      .def_property_readonly("slots", &InputRing::slots)
      .def_property_readonly("max_width", &InputRing::max_width)
      .def_property_readonly("max_height", &InputRing::max_height)
      .def_property_readonly("closed", &InputRing::closed)
      .def(
          "write",
          [](const std::shared_ptr<InputRing>& ring, const py::buffer& frame, int64_t capture_ns, int64_t arrival_ns) {
            const py::buffer_info info = frame.request();
            const std::string format = info.format;
            RE_CHECK(info.ndim == 3 && info.shape[2] == 3, FrameError, "input frame has shape ", shape_text(info),
                     "; an input ring takes (H, W, 3) uint8 RGB");
            RE_CHECK(info.itemsize == 1 && (format == "B" || format == "=B" || format == "<B" || format == "|u1"),
                     FrameError, "input frame has element format '", format, "' of ", info.itemsize,
                     " bytes; an input ring takes (H, W, 3) uint8 RGB");
            optional_time(capture_ns, "capture_ns");
            optional_time(arrival_ns, "arrival_ns");
            const FrameStrides strides{info.strides[0], info.strides[1], info.strides[2]};
            const auto* src = static_cast<const uint8_t*>(info.ptr);
            GilRelease release;  // info keeps the buffer exported while the copy runs
            return ring->write(src, info.shape[1], info.shape[0], strides, capture_ns, arrival_ns);
          },
          py::arg("frame"), py::arg("capture_ns") = -1, py::arg("arrival_ns") = -1)
      .def(
          "read",
          [](const std::shared_ptr<InputRing>& ring, int n, bool latest, const py::object& timeout) {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            RE_CHECK(n >= 1, InvalidArgument, "n must be >= 1, got ", n);
            const int max_out = latest ? 1 : static_cast<int>(std::min<int64_t>(n, ring->slots()));
            std::vector<InputRead> reads(static_cast<size_t>(max_out));
            int count = 0;
            wait_in_slices(timeout_ns, [&](int64_t slice) {
              bool woken = false;
              count = ring->read(reads.data(), max_out, latest, slice, &woken);
              return count > 0 || woken;
            });
            py::list frames;
            for (int i = 0; i < count; ++i) frames.append(make_frame(ring, reads[i]));
            return frames;
          },
          py::arg("n") = 1, py::arg("latest") = true, py::arg("timeout") = 0.0)
      .def("current",
           [](const std::shared_ptr<InputRing>& ring) -> py::object {
             InputRead read;
             if (!ring->current(&read)) return py::none();
             return make_frame(ring, read);
           })
      .def("release_held", &InputRing::release_held)
      .def("reset", &InputRing::reset)
      .def("wake", &InputRing::wake)
      .def("close", &InputRing::close)
      .def("stats", &ring_stats)
      .def("__repr__", [](const InputRing& r) {
        return "<InputRing " + std::to_string(r.slots()) + " slots of " + std::to_string(r.max_width()) + "x" +
               std::to_string(r.max_height()) + ">";
      });

  py::class_<DecoderHandle>(m, "Decoder")
      .def(py::init([](std::shared_ptr<InputRing> ring, const std::string& codec, int64_t queue_capacity,
                       int64_t max_packet_bytes) {
             RE_CHECK(ring != nullptr, InvalidArgument, "a decoder needs an InputRing, got None");
             const InputCodec kind = parse_input_codec(codec);
             GilRelease release;  // prefaulting the packet buffers, opening the codec, starting the thread
             return DecoderHandle{std::make_shared<Decoder>(std::move(ring), kind, queue_capacity, max_packet_bytes)};
           }),
           py::arg("ring"), py::arg("codec"), py::arg("queue_capacity") = 8, py::arg("max_packet_bytes") = 2 << 20)
      .def_property_readonly("codec", [](const DecoderHandle& h) { return input_codec_name(h.decoder->codec()); })
      .def_property_readonly("ring", [](const DecoderHandle& h) { return h.decoder->ring(); })
      .def_property_readonly("queue_capacity", [](const DecoderHandle& h) { return h.decoder->queue_capacity(); })
      .def_property_readonly("max_packet_bytes", [](const DecoderHandle& h) { return h.decoder->max_packet_bytes(); })
      .def_property_readonly("need_keyframe", [](const DecoderHandle& h) { return h.decoder->need_keyframe(); })
      .def_property_readonly("keyframe_requests",
                             [](const DecoderHandle& h) { return h.decoder->counters().keyframe_requests.load(); })
      .def_property_readonly("running", [](const DecoderHandle& h) { return h.decoder->running(); })
      .def(
          "submit",
          [](DecoderHandle& h, const py::object& data, int64_t capture_ns, int64_t arrival_ns) {
            optional_time(capture_ns, "capture_ns");
            optional_time(arrival_ns, "arrival_ns");
            const HeldBuffer buffer(data.ptr(), PyBUF_SIMPLE);  // C-contiguous bytes
            const auto* bytes = static_cast<const uint8_t*>(buffer.view().buf);
            const auto size = static_cast<size_t>(buffer.view().len);
            SubmitResult result;
            {
              GilRelease release;  // the copy into a packet buffer
              result = h.decoder->submit(bytes, size, capture_ns, arrival_ns);
            }
            return std::string(submit_result_name(result));
          },
          py::arg("data"), py::arg("capture_ns") = -1, py::arg("arrival_ns") = -1)
      .def("last_error",
           [](const DecoderHandle& h) -> py::object {
             const std::string error = h.decoder->last_error();
             if (error.empty()) return py::none();
             return py::str(error);
           })
      .def(
          "reset",
          [](DecoderHandle& h, double timeout) {
            RE_CHECK(timeout >= 0, InvalidArgument, "timeout must be >= 0 seconds, got ", timeout);
            GilRelease release;  // waits for the packet being decoded
            h.decoder->reset(static_cast<int64_t>(timeout * 1e9));
          },
          py::arg("timeout") = 2.0)
      .def(
          "wait_idle",
          [](DecoderHandle& h, const py::object& timeout) {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            GilRelease release;
            return h.decoder->wait_idle(timeout_ns);
          },
          py::arg("timeout") = py::none())
      .def(
          "hold_for_tests", [](DecoderHandle& h, bool hold) { h.decoder->hold_for_tests(hold); }, py::arg("hold"))
      .def("close",
           [](DecoderHandle& h) {
             GilRelease release;  // joins the decoder thread, which never needs the GIL
             h.decoder->close();
           })
      .def("stats", [](const DecoderHandle& h) { return decoder_stats(*h.decoder); })
      .def("__repr__", [](const DecoderHandle& h) {
        return std::string("<Decoder ") + input_codec_name(h.decoder->codec()) +
               (h.decoder->running() ? " running>" : " closed>");
      });
}

}  // namespace reactor::bindings
