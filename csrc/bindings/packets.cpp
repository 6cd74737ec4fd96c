// Python binding of PacketQueue and Packet: pop releases the GIL; a packet counts its buffer exports.
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/Error.h"
#include "core/PacketQueue.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

// A popped packet. Its metadata is copied out at pop time, so it stays readable after release().
// Note: the buffer returns to the pool on release() or when this object dies; release() with a
// live memoryview/numpy export raises BufferError (as mmap.close() does) instead of letting the
// encoder overwrite bytes someone is still reading.
struct PacketHandle {
  std::unique_ptr<PacketRef> ref;
  PacketMeta meta;
  int exports = 0;

  const uint8_t* data() const {
    RE_CHECK(ref && !ref->released(), Closed, "the packet was released");
    return ref->data();
  }
};

PacketHandle* packet_of(PyObject* obj) {
  return py::detail::load_type<PacketHandle>(py::handle(obj)).operator PacketHandle*();
}

int packet_getbuffer(PyObject* obj, Py_buffer* view, int flags) {
  PacketHandle* packet = nullptr;
  try {
    packet = packet_of(obj);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_BufferError, e.what());
    view->obj = nullptr;
    return -1;
  }
  if (packet == nullptr || !packet->ref || packet->ref->released()) {
    PyErr_SetString(PyExc_BufferError, "the packet was released");
    view->obj = nullptr;
    return -1;
  }
  void* data = const_cast<uint8_t*>(packet->ref->data());
  if (PyBuffer_FillInfo(view, obj, data, static_cast<Py_ssize_t>(packet->meta.size), /*readonly=*/1, flags) != 0) {
    return -1;
  }
  ++packet->exports;
  return 0;
}

void packet_releasebuffer(PyObject* obj, Py_buffer*) {
  PacketHandle* packet = nullptr;
  try {
    packet = packet_of(obj);
  } catch (const std::exception&) {
    return;
  }
  if (packet != nullptr) --packet->exports;
}

void release_packet(PacketHandle& packet) {
  if (packet.exports > 0) {
    throw py::buffer_error("the packet has " + std::to_string(packet.exports) +
                           " live buffer export(s) (memoryview / numpy); release them before the packet");
  }
  if (packet.ref) packet.ref->release();
}

py::object wrap(const std::shared_ptr<PacketQueue>& queue, int index) {
  auto packet = std::make_unique<PacketHandle>();
  packet->ref = std::make_unique<PacketRef>(queue, index);
  packet->meta = queue->meta(index);
  return py::cast(std::move(packet));
}

}  // namespace

void init_packets(py::module_& m) {
  py::class_<PacketHandle> packet(m, "Packet", py::buffer_protocol());
  packet.def_property_readonly("codec", [](const PacketHandle& p) { return codec_name(p.meta.codec); })
      .def_property_readonly("keyframe", [](const PacketHandle& p) { return p.meta.keyframe; })
      .def_property_readonly("frame_index", [](const PacketHandle& p) { return p.meta.frame_index; })
      .def_property_readonly("width", [](const PacketHandle& p) { return p.meta.width; })
      .def_property_readonly("height", [](const PacketHandle& p) { return p.meta.height; })
      .def_property_readonly("size", [](const PacketHandle& p) { return p.meta.size; })
      .def_property_readonly("pts_ns", [](const PacketHandle& p) { return p.meta.pts_ns; })
      .def_property_readonly("t_acquire_ns", [](const PacketHandle& p) { return p.meta.t_acquire_ns; })
      .def_property_readonly("t_commit_ns", [](const PacketHandle& p) { return p.meta.t_commit_ns; })
      .def_property_readonly("t_encode_start_ns", [](const PacketHandle& p) { return p.meta.t_encode_start_ns; })
      .def_property_readonly("t_encode_end_ns", [](const PacketHandle& p) { return p.meta.t_encode_end_ns; })
      .def_property_readonly("t_publish_ns", [](const PacketHandle& p) { return p.meta.t_publish_ns; })
      .def_property_readonly("released", [](const PacketHandle& p) { return !p.ref || p.ref->released(); })
      .def("tobytes",
           [](const PacketHandle& p) { return py::bytes(reinterpret_cast<const char*>(p.data()), p.meta.size); })
      .def("release", &release_packet)
      .def("__len__", [](const PacketHandle& p) { return p.meta.size; })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PacketHandle& p, const py::args&) { release_packet(p); })
      .def("__repr__", [](const PacketHandle& p) {
        return std::string("<Packet ") + codec_name(p.meta.codec) + (p.meta.keyframe ? " key" : "") + " frame " +
               std::to_string(p.meta.frame_index) + " " + std::to_string(p.meta.width) + "x" +
               std::to_string(p.meta.height) + ", " + std::to_string(p.meta.size) + " bytes>";
      });
  // Replace pybind11's buffer slots with ours, which count exports (see PacketHandle).
  auto* heap_type = reinterpret_cast<PyHeapTypeObject*>(packet.ptr());
  heap_type->as_buffer.bf_getbuffer = &packet_getbuffer;
  heap_type->as_buffer.bf_releasebuffer = &packet_releasebuffer;
  reinterpret_cast<PyTypeObject*>(packet.ptr())->tp_as_buffer = &heap_type->as_buffer;

  py::class_<PacketQueue, std::shared_ptr<PacketQueue>>(m, "PacketQueue")
      .def_property_readonly("capacity", &PacketQueue::capacity)
      .def_property_readonly("max_packet_bytes", &PacketQueue::max_packet_bytes)
      .def_property_readonly("size", &PacketQueue::size)
      .def_property_readonly("closed", &PacketQueue::closed)
      .def(
          "pop",
          [](const std::shared_ptr<PacketQueue>& queue, const py::object& timeout) -> py::object {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            // Wait in slices so that Ctrl-C reaches a thread parked here without a timeout.
            constexpr int64_t kSliceNs = 100'000'000;
            int64_t waited = 0;
            while (true) {
              const int64_t slice = timeout_ns < 0 ? kSliceNs : std::min(kSliceNs, timeout_ns - waited);
              int index;
              {
                GilRelease release;  // blocks until a packet, the timeout, or close
                index = queue->pop(slice);
              }
              if (index >= 0) return wrap(queue, index);
              waited += slice;
              if (timeout_ns >= 0 && waited >= timeout_ns) {
                RE_THROW(Timeout, "no packet within ", static_cast<double>(timeout_ns) / 1e6, " ms");
              }
              if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            }
          },
          py::arg("timeout") = py::none())
      .def("try_pop",
           [](const std::shared_ptr<PacketQueue>& queue) -> py::object {
             const int index = queue->try_pop();
             return index < 0 ? py::object(py::none()) : wrap(queue, index);
           })
      .def("fileno", &PacketQueue::event_fd)
      .def("clear_event", &PacketQueue::clear_event)
      .def("close", &PacketQueue::close);
}

}  // namespace reactor::bindings
