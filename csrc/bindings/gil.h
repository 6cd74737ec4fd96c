// GilRelease: the GIL released around a blocking native call, safe at interpreter shutdown.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <thread>

namespace reactor::bindings {

inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// Note: like py::gil_scoped_release, with one difference. A host's daemon thread blocked in a native
// call (say PacketQueue.pop) may return after the interpreter began to finalize. Taking the GIL back
// then makes CPython end the thread with pthread_exit, whose forced unwind through a noexcept
// destructor (py::gil_scoped_release's) calls std::terminate: the process aborts at exit. So a call
// that returns during finalization parks its thread instead (the process is exiting; nothing waits
// for a daemon thread), and the destructor is noexcept(false) so that a thread already waiting for
// the GIL when finalization begins unwinds cleanly (pybind11 rethrows the forced unwind).
class GilRelease {
 public:
  GilRelease() : state_(PyEval_SaveThread()) {}
  ~GilRelease() noexcept(false) {
    while (interpreter_finalizing()) std::this_thread::sleep_for(std::chrono::hours(1));
    PyEval_RestoreThread(state_);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_;
};

}  // namespace reactor::bindings
