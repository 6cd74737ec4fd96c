// Python binding of AudioRing: int16 interleaved samples in and out through the buffer protocol, the
// copies and waits without the GIL, an eventfd for asyncio readers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/AudioRing.h"
#include "core/Error.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

// int16 samples ('h', any byte-order mark for native), or raw bytes ('B'/'b'/'c', an even count)
// read as native int16: a WebSocket payload of int16 LE arrives as bytes.
int64_t int16_samples(const Py_buffer& view, const char* what) {
  const std::string format = view.format != nullptr ? view.format : "B";
  const bool int16 = view.itemsize == 2 && (format == "h" || format == "=h" || format == "<h" || format == "@h");
  const bool bytes = view.itemsize == 1 && (format == "B" || format == "b" || format == "c");
  RE_CHECK(int16 || bytes, InvalidArgument, what, " has element format '", format, "' of ", view.itemsize,
           " bytes; audio is int16 (or bytes of int16)");
  RE_CHECK(view.len % 2 == 0, InvalidArgument, what, " of ", view.len, " bytes is not a whole number of int16 samples");
  return static_cast<int64_t>(view.len / 2);
}

py::dict audio_stats(const AudioRing& ring) {
  const AudioCounters& c = ring.counters();
  py::dict out;
  out["frames_in"] = c.frames_in.load();
  out["frames_out"] = c.frames_out.load();
  out["frames_dropped"] = c.frames_dropped.load();
  out["writes"] = c.writes.load();
  out["reads"] = c.reads.load();
  out["available"] = ring.available();
  return out;
}

}  // namespace

void init_audio(py::module_& m) {
  py::class_<AudioRing, std::shared_ptr<AudioRing>>(m, "AudioRing")
      .def(py::init([](int64_t rate, int64_t channels, int64_t capacity_frames, int64_t notify_frames) {
             GilRelease release;
             return std::make_shared<AudioRing>(rate, channels, capacity_frames, notify_frames);
           }),
           py::arg("rate"), py::arg("channels"), py::arg("capacity_frames"), py::arg("notify_frames") = 0)
      .def_property_readonly("rate", &AudioRing::rate)
      .def_property_readonly("channels", &AudioRing::channels)
      .def_property_readonly("capacity_frames", &AudioRing::capacity_frames)
      .def_property_readonly("notify_frames", &AudioRing::notify_frames)
      .def_property_readonly("available", &AudioRing::available)
      .def_property_readonly("closed", &AudioRing::closed)
      .def(
          "write",
          [](const std::shared_ptr<AudioRing>& ring, const py::object& pcm, int64_t pts_ns) {
            RE_CHECK(pts_ns >= -1, InvalidArgument, "pts_ns must be >= 0 (or -1: now), got ", pts_ns);
            const HeldBuffer buffer(pcm.ptr(), PyBUF_C_CONTIGUOUS | PyBUF_FORMAT);
            const int64_t samples = int16_samples(buffer.view(), "pcm");
            RE_CHECK(samples % ring->channels() == 0, InvalidArgument, "pcm of ", samples,
                     " samples is not a whole number of frames of ", ring->channels(), " channels");
            const auto* data = static_cast<const int16_t*>(buffer.view().buf);
            GilRelease release;  // the copy
            return ring->write(data, samples / ring->channels(), pts_ns);
          },
          py::arg("pcm"), py::arg("pts_ns") = -1)
      .def(
          "read_into",
          [](const std::shared_ptr<AudioRing>& ring, const py::object& out, int64_t min_frames,
             const py::object& timeout) {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            const HeldBuffer buffer(out.ptr(), PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE);
            const int64_t max_frames = int16_samples(buffer.view(), "out") / ring->channels();
            auto* data = static_cast<int16_t*>(buffer.view().buf);
            std::pair<int64_t, int64_t> got{0, -1};
            wait_in_slices(timeout_ns, [&](int64_t slice) {
              bool woken = false;
              got = ring->read(data, max_frames, min_frames, slice, &woken);
              return got.first > 0 || woken;
            });
            return py::make_tuple(got.first, got.second);
          },
          py::arg("out"), py::arg("min_frames") = 1, py::arg("timeout") = 0.0)
      .def("fileno", &AudioRing::event_fd)
      .def("clear_event", &AudioRing::clear_event)
      .def("reset", &AudioRing::reset)
      .def("wake", &AudioRing::wake)
      .def("close", &AudioRing::close)
      .def("stats", &audio_stats)
      .def("__repr__", [](const AudioRing& r) {
        return "<AudioRing " + std::to_string(r.rate()) + " Hz x" + std::to_string(r.channels()) + ", " +
               std::to_string(r.capacity_frames()) + " frames>";
      });
}

}  // namespace reactor::bindings
