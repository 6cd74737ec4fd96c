// GilRelease: the GIL released around a blocking native call, safe at interpreter shutdown.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
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

// The thread that runs Python's atexit callbacks (and then finalization), once they began; set by
// the atexit callback the module registers at import (module.cpp), before Py_Finalize marks the
// interpreter as finalizing. From then on another thread returning from a blocking call parks too:
// without this, one whose call returned just before finalization began waited for the GIL and was
// ended by CPython (pthread_exit) from inside take_gil, which aborted the process at exit in rare
// runs (CI saw 1 in 3).
struct ExitState {
  std::atomic<bool> exiting{false};
  std::atomic<std::thread::id> thread{};
};
inline ExitState& exit_state() {
  static ExitState state;  // never destroyed before the parked threads: trivially destructible
  return state;
}
inline void mark_python_exiting() {
  exit_state().thread.store(std::this_thread::get_id());
  exit_state().exiting.store(true, std::memory_order_release);
}
// True when this thread must not take the GIL back: Python is exiting and this is not its exiting thread.
inline bool must_park() {
  const ExitState& state = exit_state();
  const bool exiting = state.exiting.load(std::memory_order_acquire) || interpreter_finalizing();
  return exiting && state.thread.load() != std::this_thread::get_id();
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
    while (must_park()) std::this_thread::sleep_for(std::chrono::hours(1));
    PyEval_RestoreThread(state_);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_;
};

}  // namespace reactor::bindings
