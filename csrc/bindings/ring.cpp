// Python binding of FrameRing and FrameSlot (buffer protocol + __dlpack__); blocking calls release the GIL.
// The track's per-frame path (FramePacer, FrameWriter) is in writer.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/dlpack.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/Error.h"
#include "core/FrameRing.h"

namespace py = pybind11;

namespace reactor::bindings {

int64_t timeout_to_ns(const py::object& timeout) {
  if (timeout.is_none()) return -1;
  const double seconds = timeout.cast<double>();
  RE_CHECK(seconds >= 0, InvalidArgument, "timeout must be None or >= 0 seconds, got ", seconds);
  return static_cast<int64_t>(seconds * 1e9);
}

py::dict histogram_dict(const HistogramSnapshot& s) {
  py::dict d;
  d["count"] = s.count;
  d["p50"] = s.p50;
  d["p90"] = s.p90;
  d["p99"] = s.p99;
  d["p999"] = s.p999;
  d["max"] = s.max;
  d["mean"] = s.mean;
  return d;
}

namespace {

// A slot in the producer's hands. It keeps the ring (and so the slot memory) alive; after commit
// or abort it refuses new buffer exports, so a stale handle cannot start writing into a slot the
// encoder owns.
struct SlotHandle {
  std::shared_ptr<FrameRing> ring;
  AcquiredSlot acquired;
  bool done = false;
  Py_ssize_t shape[3] = {0, 0, 3};
  Py_ssize_t strides[3] = {0, 3, 1};

  SlotHandle(std::shared_ptr<FrameRing> r, const AcquiredSlot& a) : ring(std::move(r)), acquired(a) {
    shape[0] = static_cast<Py_ssize_t>(a.height);
    shape[1] = static_cast<Py_ssize_t>(a.width);
    strides[0] = static_cast<Py_ssize_t>(a.width * 3);
  }

  void check_writable() const {
    RE_CHECK(!done, StateError, "slot ", acquired.slot, " was already committed or aborted; acquire a new one");
  }
};

// What a DLPack consumer owns: the tensor, its shape and strides, and a reference to the ring.
struct DlpackHolder {
  dlpack::ManagedTensor managed{};
  int64_t shape[3];
  int64_t strides[3];
  std::shared_ptr<FrameRing> ring;
};

void delete_holder(dlpack::ManagedTensor* self) { delete static_cast<DlpackHolder*>(self->manager_ctx); }

void capsule_destructor(PyObject* capsule) {
  // A consumer renames the capsule "used_dltensor" when it takes ownership; otherwise we free it.
  if (PyCapsule_IsValid(capsule, "dltensor")) {
    auto* managed = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
    if (managed != nullptr && managed->deleter != nullptr) managed->deleter(managed);
  }
}

py::capsule to_dlpack(SlotHandle& slot) {
  slot.check_writable();
  auto* holder = new DlpackHolder();
  holder->ring = slot.ring;
  holder->shape[0] = slot.acquired.height;
  holder->shape[1] = slot.acquired.width;
  holder->shape[2] = 3;
  holder->strides[0] = slot.acquired.width * 3;
  holder->strides[1] = 3;
  holder->strides[2] = 1;
  dlpack::Tensor& t = holder->managed.dl_tensor;
  t.data = slot.acquired.data;
  t.device = {dlpack::kDLCPU, 0};
  t.ndim = 3;
  t.dtype = {dlpack::kDLUInt, 8, 1};
  t.shape = holder->shape;
  t.strides = holder->strides;
  t.byte_offset = 0;
  holder->managed.manager_ctx = holder;
  holder->managed.deleter = &delete_holder;
  PyObject* capsule = PyCapsule_New(&holder->managed, "dltensor", &capsule_destructor);
  if (capsule == nullptr) {
    delete holder;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

int slot_getbuffer(PyObject* obj, Py_buffer* view, int flags) {
  view->obj = nullptr;
  SlotHandle* slot = nullptr;
  try {
    slot = py::detail::load_type<SlotHandle>(py::handle(obj)).operator SlotHandle*();
    slot->check_writable();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_BufferError, e.what());
    return -1;
  }
  // (height, width, 3) uint8, C-contiguous; shape and strides live in the handle.
  view->buf = slot->acquired.data;
  view->obj = obj;
  Py_INCREF(obj);
  view->len = static_cast<Py_ssize_t>(slot->acquired.width * slot->acquired.height * 3);
  view->readonly = 0;
  view->itemsize = 1;
  view->format = (flags & PyBUF_FORMAT) ? const_cast<char*>("B") : nullptr;
  view->ndim = (flags & PyBUF_ND) ? 3 : 1;
  view->shape = (flags & PyBUF_ND) ? slot->shape : nullptr;
  view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? slot->strides : nullptr;
  view->suboffsets = nullptr;
  view->internal = nullptr;
  return 0;
}

SlotHandle& own_slot(const std::shared_ptr<FrameRing>& ring, SlotHandle& slot) {
  RE_CHECK(slot.ring == ring, StateError, "slot ", slot.acquired.slot, " belongs to another ring");
  return slot;
}

py::dict stats_dict(FrameRing& ring) {
  const Counters& c = ring.stats().counters;
  py::dict out;
  out["frames_committed"] = c.frames_committed.load();
  out["frames_encoded"] = c.frames_encoded.load();
  out["frames_dropped_oldest"] = c.frames_dropped_oldest.load();
  out["frames_dropped_newest"] = c.frames_dropped_newest.load();
  out["frames_aborted"] = c.frames_aborted.load();
  out["frames_discarded"] = c.frames_discarded.load();
  out["block_timeouts"] = c.block_timeouts.load();
  out["encode_errors"] = c.encode_errors.load();
  out["encoder_wakeups"] = c.encoder_wakeups.load();
  py::dict latency;
  for (int i = 0; i < static_cast<int>(Latency::Count); ++i) {
    latency[Stats::kLatencyNames[i]] = histogram_dict(ring.stats().histogram(static_cast<Latency>(i)).snapshot());
  }
  out["latency"] = latency;
  return out;
}

std::string shape_text(const py::buffer_info& info) {
  std::string text = "(";
  for (size_t i = 0; i < info.shape.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(info.shape[i]);
  }
  return text + (info.shape.size() == 1 ? ",)" : ")");
}

}  // namespace

void init_ring(py::module_& m) {
  py::class_<SlotHandle> slot_class(m, "FrameSlot", py::buffer_protocol());
  // Our own buffer slot (pybind11's turns every error into "Error getting buffer"): a stale slot
  // says why it refuses.
  auto* heap_type = reinterpret_cast<PyHeapTypeObject*>(slot_class.ptr());
  heap_type->as_buffer.bf_getbuffer = &slot_getbuffer;
  heap_type->as_buffer.bf_releasebuffer = nullptr;
  reinterpret_cast<PyTypeObject*>(slot_class.ptr())->tp_as_buffer = &heap_type->as_buffer;
  slot_class.def_property_readonly("index", [](const SlotHandle& s) { return s.acquired.slot; })
      .def_property_readonly("width", [](const SlotHandle& s) { return s.acquired.width; })
      .def_property_readonly("height", [](const SlotHandle& s) { return s.acquired.height; })
      .def_property_readonly("dropping", [](const SlotHandle& s) { return s.acquired.dropping; })
      .def_property_readonly("t_acquire_ns", [](const SlotHandle& s) { return s.acquired.t_acquire_ns; })
      .def(
          "__dlpack__",
          [](SlotHandle& s, const py::object&, const py::object&, const py::object& dl_device, const py::object& copy) {
            if (!dl_device.is_none()) {
              const auto device = dl_device.cast<std::pair<int, int>>();
              RE_CHECK(device.first == dlpack::kDLCPU, InvalidArgument,
                       "a frame slot lives on the CPU (DLPack device 1); asked for device ", device.first);
            }
            RE_CHECK(copy.is_none() || !copy.cast<bool>(), InvalidArgument,
                     "a frame slot is exported zero-copy only; copy=True is not supported");
            return to_dlpack(s);
          },
          py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
          py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const SlotHandle&) { return std::make_pair(int{dlpack::kDLCPU}, 0); })
      .def("__repr__", [](const SlotHandle& s) {
        return "<FrameSlot " + std::to_string(s.acquired.slot) + " " + std::to_string(s.acquired.width) + "x" +
               std::to_string(s.acquired.height) + (s.done ? " done>" : ">");
      });

  py::class_<FrameRing, std::shared_ptr<FrameRing>>(m, "FrameRing")
      .def(py::init([](int64_t slots, int64_t max_width, int64_t max_height, const std::string& policy,
                       const py::object& arena) {
             std::shared_ptr<HostArena> memory;
             if (!arena.is_none()) memory = arena.cast<const ArenaHandle&>().get();
             const RingPolicy parsed = parse_ring_policy(policy);
             GilRelease release;  // mapping and prefaulting the slots can take a while
             return std::make_shared<FrameRing>(slots, max_width, max_height, parsed, std::move(memory));
           }),
           py::arg("slots"), py::arg("max_width"), py::arg("max_height"), py::arg("policy") = "block", py::kw_only(),
           py::arg("arena") = py::none())
      .def_property_readonly("slots", &FrameRing::slots)
      .def_property_readonly("max_width", &FrameRing::max_width)
      .def_property_readonly("max_height", &FrameRing::max_height)
      .def_property_readonly("slot_bytes", &FrameRing::slot_bytes)
      .def_property_readonly("policy", [](const FrameRing& r) { return ring_policy_name(r.policy()); })
      .def_property_readonly("pinning", [](const FrameRing& r) { return r.arena()->pinning(); })
      .def_property_readonly("ready", &FrameRing::ready_count)
      .def_property_readonly("closed", &FrameRing::closed)
      .def(
          "acquire",
          [](const std::shared_ptr<FrameRing>& ring, int64_t width, int64_t height, const py::object& timeout) {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            AcquiredSlot acquired;
            {
              GilRelease release;  // waits for a free slot under the block policy
              acquired = ring->acquire(width, height, timeout_ns);
            }
            return SlotHandle{ring, acquired};
          },
          py::arg("width"), py::arg("height"), py::arg("timeout") = py::none())
      .def(
          "commit",
          [](const std::shared_ptr<FrameRing>& ring, SlotHandle& slot, const py::object& frame_index,
             const py::object& pts_ns) {
            own_slot(ring, slot);
            const int64_t index = frame_index.is_none() ? -1 : frame_index.cast<int64_t>();
            const int64_t pts = pts_ns.is_none() ? -1 : pts_ns.cast<int64_t>();
            RE_CHECK(frame_index.is_none() || index >= 0, InvalidArgument, "frame_index must be >= 0, got ", index);
            RE_CHECK(pts_ns.is_none() || pts >= 0, InvalidArgument, "pts_ns must be >= 0, got ", pts);
            const int64_t committed = ring->commit(slot.acquired.slot, slot.acquired.ticket, index, pts);
            slot.done = true;
            return committed;
          },
          py::arg("slot"), py::arg("frame_index") = py::none(), py::arg("pts_ns") = py::none())
      .def(
          "abort",
          [](const std::shared_ptr<FrameRing>& ring, SlotHandle& slot) {
            own_slot(ring, slot);
            ring->abort(slot.acquired.slot, slot.acquired.ticket);
            slot.done = true;
          },
          py::arg("slot"))
      .def(
          "write",
          [](const std::shared_ptr<FrameRing>& ring, const py::buffer& frame, const py::object& frame_index,
             const py::object& pts_ns, const py::object& timeout) {
            const py::buffer_info info = frame.request();
            const std::string format = info.format;
            RE_CHECK(info.ndim == 3 && info.shape[2] == 3, FrameError, "frame has shape ", shape_text(info),
                     "; the ring takes (H, W, 3) uint8 RGB");
            RE_CHECK(info.itemsize == 1 && (format == "B" || format == "=B" || format == "<B" || format == "|u1"),
                     FrameError, "frame has element format '", format, "' of ", info.itemsize,
                     " bytes; the ring takes (H, W, 3) uint8 RGB");
            const int64_t index = frame_index.is_none() ? -1 : frame_index.cast<int64_t>();
            const int64_t pts = pts_ns.is_none() ? -1 : pts_ns.cast<int64_t>();
            RE_CHECK(frame_index.is_none() || index >= 0, InvalidArgument, "frame_index must be >= 0, got ", index);
            RE_CHECK(pts_ns.is_none() || pts >= 0, InvalidArgument, "pts_ns must be >= 0, got ", pts);
            const int64_t timeout_ns = timeout_to_ns(timeout);
            const FrameStrides strides{info.strides[0], info.strides[1], info.strides[2]};
            const auto* src = static_cast<const uint8_t*>(info.ptr);
            // The buffer stays exported (info holds it) while the copy runs without the GIL.
            GilRelease release;
            return ring->write(src, info.shape[1], info.shape[0], strides, index, pts, timeout_ns);
          },
          py::arg("frame"), py::arg("frame_index") = py::none(), py::arg("pts_ns") = py::none(),
          py::arg("timeout") = py::none())
      .def("reset", &FrameRing::reset)
      .def("stats", [](FrameRing& ring) { return stats_dict(ring); })
      .def("close", &FrameRing::close)
      .def("__repr__", [](const FrameRing& r) {
        return "<FrameRing " + std::to_string(r.slots()) + " slots of " + std::to_string(r.max_width()) + "x" +
               std::to_string(r.max_height()) + ", policy=" + ring_policy_name(r.policy()) + ">";
      });
}

}  // namespace reactor::bindings
