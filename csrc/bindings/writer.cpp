// Python binding of the track's per-frame path: FramePacer (pacing, the commit record) and FrameWriter
// (the paced copying emit and the zero-copy acquire/commit, as bare C-API methods); waits release the GIL.
#include <pthread.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/Clock.h"
#include "core/Error.h"
#include "core/FramePacer.h"
#include "core/FrameRing.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {
// The producer's per-frame path of one track: a paced copying emit, and the zero-copy acquire/commit.
// Lives as long as the track; one producer at a time (the ring's rule). Its views of the slots are
// made once per slot and size and handed out again, so a frame costs no Python object.
struct FrameWriter {
  std::shared_ptr<FrameRing> ring;
  std::shared_ptr<FramePacer> pacer;
  int64_t timeout_ns;
  py::object base;                 // what the views keep alive: a capsule holding the ring
  std::vector<py::object> views;   // per slot: a writable (height, width, 3) uint8 ndarray, or none
  std::vector<int64_t> view_size;  // per slot: width * 65536 + height of its view
  std::vector<uint8_t> black;      // max_height x max_width x 3 zeros: the source of emit(None)
  AcquiredSlot held;
  bool holding = false;
  int64_t started_ns = 0;
  int64_t width, height;                    // the last frame's size: what emit(None) and a bare acquire use
  int64_t next_width = 0, next_height = 0;  // the size the next __enter__ acquires (0: the last)
  py::object latest;                        // the last frame emitted (a reference), None after frame()
  bool latest_batch = false;                // ... and whether it was an (N, H, W, 3) batch

  // The poll point's native half (see skip_poll_point): armed by the session thread once the
  // track's Python side found nothing else for a poll point to do than apply commands, until
  // armed_until_ns (-1: no limit; a model with command state reads it again every so often).
  std::atomic<bool> armed{false};
  std::atomic<bool> poll_requested{false};  // a command, a stop or new media since the last poll point
  pthread_t session_thread{};
  int64_t armed_until_ns = -1;

  FrameWriter(std::shared_ptr<FrameRing> r, std::shared_ptr<FramePacer> p, int64_t timeout, int64_t w, int64_t h)
      : ring(std::move(r)),
        pacer(std::move(p)),
        timeout_ns(timeout),
        black(static_cast<size_t>(ring->max_width() * ring->max_height() * 3), 0),
        width(w),
        height(h) {
    const size_t slots = static_cast<size_t>(ring->slots()) + 1;  // + the drop_newest scratch slot
    views.resize(slots);
    view_size.assign(slots, -1);
    base = py::capsule(new std::shared_ptr<FrameRing>(ring),
                       [](void* p) { delete static_cast<std::shared_ptr<FrameRing>*>(p); });
    set_size(w, h);
  }

  void set_size(int64_t w, int64_t h) {
    RE_CHECK(w > 0 && h > 0 && w <= ring->max_width() && h <= ring->max_height(), InvalidArgument,
             "frame size must be between 1x1 and ", ring->max_width(), "x", ring->max_height(), ", got ", w, "x", h);
    width = w;
    height = h;
  }

  PyObject* view_of(const AcquiredSlot& a) {
    const size_t i = static_cast<size_t>(a.slot);
    const int64_t key = a.width * 65536 + a.height;
    if (view_size[i] != key) {
      views[i] = py::array(py::dtype::of<uint8_t>(), {a.height, a.width, int64_t{3}},
                           {a.width * 3, int64_t{3}, int64_t{1}}, a.data, base);
      view_size[i] = key;
    }
    return views[i].inc_ref().ptr();
  }
};

// Note: the per-frame methods (emit, acquire, commit, abort, frame, __enter__, __exit__) are bare
// CPython METH_FASTCALL functions, not pybind11 ones. p50 of one no-op call on the 2-core VM, right
// after a 16 MB sweep (as between real frames): a Python def 2.0-2.4 us, a pybind11 method 5.3-6.5 us
// (7.2-9.1 us with two arguments), a C-API method 1.7-2.4 us; after a 25 ms sleep and the sweep (thread
// CPU time): 6.9, 24 and 7.1 us; warm, all 0.3-0.4 us. pybind11's dispatch is most of a cold
// crossing's fixed cost, so the frame path pays it nowhere.
FrameWriter& writer_of(PyObject* self) {
  // pybind11 keeps the C++ pointer first in a simple-layout instance; other layouts take the caster.
  auto* instance = reinterpret_cast<py::detail::instance*>(self);
  if (instance->simple_layout) return *static_cast<FrameWriter*>(instance->simple_value_holder[0]);
  return py::cast<FrameWriter&>(py::handle(self));
}

// Note: the poll point without Python. emit and frame() are poll points (queued commands are applied
// there); in Python the check costs 30-35 us p50 when caches are cold between paced frames (get_ctx, the
// session check, the command queue), an eighth of a 512x512 copy. The track arms its writer from the
// session thread when nothing but commands can need a poll point, and every command, stop or wake-up
// requests one (poll_requested), so emit_fast / frame_fast skip Python exactly when the Python poll
// point would have found nothing to do; anything else (another thread, a session ended, a request) goes
// through the Python path.
bool skip_poll_point(const FrameWriter& w) {
  if (!w.armed.load(std::memory_order_acquire) || w.poll_requested.load(std::memory_order_acquire)) return false;
  if (!pthread_equal(pthread_self(), w.session_thread)) return false;
  return w.armed_until_ns < 0 || now_ns() < w.armed_until_ns;
}

bool int_arg(PyObject* arg, int64_t& out) {
  out = PyLong_AsLongLong(arg);
  return !(out == -1 && PyErr_Occurred());
}

// A (H, W, 3) or (N, H, W, 3) uint8 frame as emit reads it.
struct FrameSource {
  const uint8_t* src = nullptr;
  int64_t frames = 1, height = 0, width = 0, frame_stride = 0;
  FrameStrides strides;
  int ndim = 3;
  PyObject* array = nullptr;  // an ndarray, referenced while it is read
  Py_buffer view{};           // any other buffer, exported while it is read
  bool exported = false;

  void release() {
    if (exported) PyBuffer_Release(&view);
    Py_XDECREF(array);
    exported = false;
    array = nullptr;
  }
};

bool shaped_frame(FrameSource& s, int ndim, const Py_ssize_t* shape, const Py_ssize_t* strides) {
  if ((ndim != 3 && ndim != 4) || shape[ndim - 1] != 3) return false;
  s.ndim = ndim;
  s.frames = ndim == 4 ? shape[0] : 1;
  s.height = shape[ndim - 3];
  s.width = shape[ndim - 2];
  s.frame_stride = ndim == 4 ? strides[0] : 0;
  s.strides = FrameStrides{strides[ndim - 3], strides[ndim - 2], strides[ndim - 1]};
  return s.frames >= 1 && s.height >= 1 && s.width >= 1;
}

// Note: an ndarray is read from its struct, not through the buffer protocol: numpy builds (and frees)
// a new format/shape record on every buffer export, a Python allocation per emit.
bool read_frame(PyObject* frame, FrameSource& s) {
  const auto& numpy = py::detail::npy_api::get();
  if (numpy.PyArray_Check_(frame)) {
    const auto* array = py::detail::array_proxy(frame);
    const auto* descr = py::detail::array_descriptor_proxy(array->descr);
    if (descr->type_num != py::detail::npy_api::NPY_UBYTE_) return false;
    static_assert(sizeof(Py_intptr_t) == sizeof(Py_ssize_t), "numpy dimensions are Py_ssize_t");
    if (!shaped_frame(s, array->nd, reinterpret_cast<const Py_ssize_t*>(array->dimensions),
                      reinterpret_cast<const Py_ssize_t*>(array->strides))) {
      return false;
    }
    s.src = reinterpret_cast<const uint8_t*>(array->data);
    s.array = frame;
    Py_INCREF(frame);  // also makes ndarray.resize() refuse while the copy runs without the GIL
    return true;
  }
  if (PyObject_GetBuffer(frame, &s.view, PyBUF_RECORDS_RO) != 0) {
    PyErr_Clear();
    return false;
  }
  s.exported = true;
  const char* format = s.view.format;
  const bool uint8 = s.view.itemsize == 1 && format != nullptr &&
                     (std::strcmp(format, "B") == 0 || std::strcmp(format, "=B") == 0 ||
                      std::strcmp(format, "<B") == 0 || std::strcmp(format, "|u1") == 0);
  if (!uint8 || s.view.strides == nullptr || !shaped_frame(s, s.view.ndim, s.view.shape, s.view.strides)) {
    s.release();
    return false;
  }
  s.src = static_cast<const uint8_t*>(s.view.buf);
  return true;
}

// emit(frame) -> 3 or 4 (its ndim) once written, paced; 0 when the frame is not a (H, W, 3) or
// (N, H, W, 3) uint8 buffer within the ring's size (the caller then says what is wrong); None: black.
PyObject* emit_frame(FrameWriter& w, PyObject* frame) {
  FrameSource source;
  if (frame == Py_None) {
    source.src = w.black.data();
    source.height = w.height;
    source.width = w.width;
    source.strides = FrameStrides{w.ring->max_width() * 3, 3, 1};
  } else if (!read_frame(frame, source)) {
    return PyLong_FromLong(0);
  }
  if (source.width > w.ring->max_width() || source.height > w.ring->max_height()) {
    source.release();
    return PyLong_FromLong(0);
  }
  try {
    // The frame stays referenced (an ndarray) or exported (another buffer) while the copies and the
    // pacing waits run without the GIL.
    GilRelease release;
    w.pacer->begin_batch(source.frames, now_ns());
    for (int64_t i = 0; i < source.frames; ++i) {
      w.ring->write_paced(source.src + i * source.frame_stride, source.width, source.height, source.strides, *w.pacer,
                          w.timeout_ns);
    }
  } catch (...) {
    source.release();
    py::detail::try_translate_exceptions();
    return nullptr;
  }
  source.release();
  w.width = source.width;
  w.height = source.height;
  w.latest = py::reinterpret_borrow<py::object>(frame);
  w.latest_batch = source.ndim == 4;
  return PyLong_FromLong(source.ndim);
}

PyObject* writer_emit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "FrameWriter.emit(frame) takes 1 argument");
    return nullptr;
  }
  return emit_frame(writer_of(self), args[0]);
}

// emit_fast(frame): emit, when the poll point has nothing to do and frame is an ndarray or None;
// else -1, and the caller takes the Python path (poll point, conversions, then emit).
PyObject* writer_emit_fast(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_SetString(PyExc_TypeError, "FrameWriter.emit_fast(frame) takes 1 argument");
    return nullptr;
  }
  FrameWriter& w = writer_of(self);
  PyObject* frame = args[0];
  if (!skip_poll_point(w) || (frame != Py_None && !py::detail::npy_api::get().PyArray_Check_(frame))) {
    return PyLong_FromLong(-1);
  }
  return emit_frame(w, frame);
}

// The slot acquire of frame() / acquire(): a free slot is taken with the GIL held (nothing to wait
// for); only a wait under block releases it. Returns a new reference to the slot's view.
PyObject* acquire_view(FrameWriter& w, int64_t width, int64_t height) {
  if (width == 0) width = w.width;
  if (height == 0) height = w.height;
  const int64_t started = now_ns();
  AcquiredSlot acquired;
  if (!w.ring->try_acquire(width, height, acquired)) {
    GilRelease release;
    acquired = w.ring->acquire(width, height, w.timeout_ns);
  }
  PyObject* view = nullptr;
  try {
    view = w.view_of(acquired);
  } catch (...) {
    w.ring->abort(acquired.slot, acquired.ticket);
    throw;
  }
  w.held = acquired;
  w.holding = true;
  w.started_ns = started;
  return view;
}

// Commits the held slot, paced: batch > 0 starts a batch of that many frames (frame(): 1), 0 continues
// the current one. Waits (GIL released) only when the pacer holds the producer back. On failure the
// slot is given back, so the ring is never left with a slot acquired.
void commit_held(FrameWriter& w, int64_t batch) {
  RE_CHECK(w.holding, StateError, "no slot is acquired; acquire one before committing");
  try {
    if (batch > 0) w.pacer->begin_batch(batch, now_ns());
    const PaceDecision decision = w.pacer->next_frame(now_ns());
    if (decision.wait_ns > 0) {
      GilRelease release;
      w.pacer->wait_until(decision.pts_ns);
    }
    w.ring->commit(w.held.slot, w.held.ticket, -1, decision.pts_ns);
    w.holding = false;
    w.pacer->record_commit(w.started_ns, now_ns(), decision.pts_ns);
    w.width = w.held.width;
    w.height = w.held.height;
  } catch (...) {
    if (w.holding) {
      w.holding = false;
      try {
        w.ring->abort(w.held.slot, w.held.ticket);
      } catch (...) {  // a closed ring refuses: nothing is left to give back
      }
    }
    throw;
  }
}

void abort_held(FrameWriter& w) {
  if (!w.holding) return;
  w.holding = false;
  w.ring->abort(w.held.slot, w.held.ticket);
}

// acquire(width, height) -> a writable (height, width, 3) uint8 view of a slot (0: the last size).
PyObject* writer_acquire(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  int64_t width = 0, height = 0;
  if (nargs != 2 || !int_arg(args[0], width) || !int_arg(args[1], height)) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "FrameWriter.acquire(width, height) takes 2 ints");
    return nullptr;
  }
  try {
    return acquire_view(writer_of(self), width, height);
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
}

// commit(batch): commit_held.
PyObject* writer_commit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  int64_t batch = 0;
  if (nargs != 1 || !int_arg(args[0], batch)) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "FrameWriter.commit(batch) takes 1 int");
    return nullptr;
  }
  try {
    commit_held(writer_of(self), batch);
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
  Py_RETURN_NONE;
}

// abort() the held slot, if any.
PyObject* writer_abort(PyObject* self, PyObject* const*, Py_ssize_t) {
  try {
    abort_held(writer_of(self));
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
  Py_RETURN_NONE;
}

// frame(width, height) -> the writer itself, as the context manager of VideoTrack.frame(): __enter__
// acquires a slot of that size (0: the last size) and returns its view, __exit__ commits it (paced)
// or, when the block raised, aborts it. The with statement's calls are C calls: no Python frame.
PyObject* writer_frame(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  int64_t width = 0, height = 0;
  if (nargs != 2 || !int_arg(args[0], width) || !int_arg(args[1], height)) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "FrameWriter.frame(width, height) takes 2 ints");
    return nullptr;
  }
  FrameWriter& w = writer_of(self);
  w.next_width = width;
  w.next_height = height;
  w.latest = py::none();
  Py_INCREF(self);
  return self;
}

// frame_fast(): frame(0, 0) when the poll point has nothing to do, else None (the Python path).
PyObject* writer_frame_fast(PyObject* self, PyObject* const*, Py_ssize_t) {
  FrameWriter& w = writer_of(self);
  if (!skip_poll_point(w)) Py_RETURN_NONE;
  w.next_width = 0;
  w.next_height = 0;
  w.latest = py::none();
  Py_INCREF(self);
  return self;
}

PyObject* writer_enter(PyObject* self, PyObject* const*, Py_ssize_t) {
  FrameWriter& w = writer_of(self);
  try {
    return acquire_view(w, w.next_width, w.next_height);
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
}

PyObject* writer_exit(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  FrameWriter& w = writer_of(self);
  try {
    if (nargs >= 1 && args[0] == Py_None) {
      commit_held(w, 1);
    } else {
      abort_held(w);
    }
  } catch (...) {
    py::detail::try_translate_exceptions();
    return nullptr;
  }
  Py_RETURN_FALSE;  // an exception of the block propagates
}

PyMethodDef writer_methods[] = {
    {"emit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_emit)), METH_FASTCALL,
     "emit(frame) -> ndim written (3 or 4), 0 if not an (H, W, 3) / (N, H, W, 3) uint8 frame in size; None: black"},
    {"emit_fast", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_emit_fast)), METH_FASTCALL,
     "emit_fast(frame) -> emit(frame) when armed and nothing waits for a poll point, else -1 (nothing done)"},
    {"frame_fast", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_frame_fast)), METH_FASTCALL,
     "frame_fast() -> frame(0, 0) when armed and nothing waits for a poll point, else None (nothing done)"},
    {"acquire", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_acquire)), METH_FASTCALL,
     "acquire(width, height) -> writable ndarray view of a slot (0: the last size)"},
    {"commit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_commit)), METH_FASTCALL,
     "commit(batch): commit the acquired slot, paced (batch > 0 starts a batch of that many frames)"},
    {"abort", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_abort)), METH_FASTCALL,
     "abort(): give the acquired slot back"},
    {"frame", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_frame)), METH_FASTCALL,
     "frame(width, height) -> self, a context manager: the view of an acquired slot, committed on exit"},
    {"__enter__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_enter)), METH_FASTCALL,
     "acquires a slot of the size given to frame(); returns its writable view"},
    {"__exit__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&writer_exit)), METH_FASTCALL,
     "commits the slot, paced; aborts it when the block raised"},
};

py::array_t<int64_t> latency_array(const FramePacer& pacer) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(FramePacer::kLatencyWindow));
  const size_t n = pacer.latency_samples(out.mutable_data(), FramePacer::kLatencyWindow);
  out.resize({static_cast<py::ssize_t>(n)});
  return out;
}

}  // namespace

void init_writer(py::module_& m) {
  py::class_<FramePacer, std::shared_ptr<FramePacer>>(m, "FramePacer")
      .def(py::init([](double fps, double max_fps) { return std::make_shared<FramePacer>(fps, max_fps); }),
           py::arg("fps"), py::arg("max_fps") = 0.0)
      .def_property_readonly("fps", &FramePacer::fps)
      .def_property_readonly("max_fps", &FramePacer::max_fps)
      .def_property_readonly("measured_fps", &FramePacer::measured_fps)
      .def_property_readonly("late_frames", &FramePacer::late_frames)
      .def_property_readonly("frames_committed", &FramePacer::frames_committed)
      .def_property_readonly("first_commit_ns", &FramePacer::first_commit_ns)
      .def_property_readonly("first_pts_ns", &FramePacer::first_pts_ns)
      .def_property_readonly("last_pts_ns", &FramePacer::last_pts_ns)
      .def_property_readonly("stopped", &FramePacer::stopped)
      .def("reset", &FramePacer::reset)
      .def("stop", &FramePacer::stop)
      .def("begin_batch", &FramePacer::begin_batch, py::arg("frames"), py::arg("now_ns"))
      .def(
          "next_frame",
          [](FramePacer& pacer, int64_t now) {
            const PaceDecision d = pacer.next_frame(now);
            return std::make_pair(d.pts_ns, d.wait_ns);
          },
          py::arg("now_ns"))
      .def("wait_until", &FramePacer::wait_until, py::arg("due_ns"), py::call_guard<GilRelease>())
      .def("emit_latency_ns", [](const FramePacer& pacer) { return latency_array(pacer); });

  py::class_<FrameWriter> writer_class(m, "FrameWriter");
  writer_class
      .def(py::init([](const std::shared_ptr<FrameRing>& ring, const std::shared_ptr<FramePacer>& pacer,
                       const py::object& timeout, int64_t width, int64_t height) {
             RE_CHECK(ring != nullptr && pacer != nullptr, InvalidArgument, "a frame writer needs a ring and a pacer");
             return std::make_unique<FrameWriter>(ring, pacer, timeout_to_ns(timeout), width, height);
           }),
           py::arg("ring"), py::arg("pacer"), py::arg("timeout"), py::arg("width"), py::arg("height"))
      .def_property_readonly("width", [](const FrameWriter& w) { return w.width; })
      .def_property_readonly("height", [](const FrameWriter& w) { return w.height; })
      .def_property_readonly("holding", [](const FrameWriter& w) { return w.holding; })
      .def("set_size", &FrameWriter::set_size, py::arg("width"), py::arg("height"))
      .def(
          "arm",
          [](FrameWriter& w, int64_t valid_ns) {
            w.session_thread = pthread_self();
            w.armed_until_ns = valid_ns < 0 ? -1 : now_ns() + valid_ns;
            w.armed.store(true, std::memory_order_release);
          },
          py::arg("valid_ns"))
      .def("disarm", [](FrameWriter& w) { w.armed.store(false, std::memory_order_release); })
      .def_property_readonly("armed", [](const FrameWriter& w) { return w.armed.load(); })
      .def("request_poll", [](FrameWriter& w) { w.poll_requested.store(true, std::memory_order_release); })
      .def("take_poll_request",
           [](FrameWriter& w) { return w.poll_requested.exchange(false, std::memory_order_acq_rel); })
      .def("latest",
           [](const FrameWriter& w) { return std::make_pair(w.latest ? w.latest : py::none(), w.latest_batch); })
      .def("forget_latest", [](FrameWriter& w) { w.latest = py::none(); });
  for (PyMethodDef& def : writer_methods) {
    py::object method =
        py::reinterpret_steal<py::object>(PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(writer_class.ptr()), &def));
    if (!method) throw py::error_already_set();
    py::setattr(writer_class, def.ml_name, method);
  }
}

}  // namespace reactor::bindings
