// Python-side handles shared between binding files (which object owns which core object).
#pragma once

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "bindings/gil.h"
#include "core/HostArena.h"
#include "core/Stats.h"

namespace reactor::bindings {

// HostArena as Python sees it: close() drops this reference; views and rings keep their own.
struct ArenaHandle {
  std::shared_ptr<HostArena> arena;
  const std::shared_ptr<HostArena>& get() const;  // throws Closed after close()
};

// Timeouts arrive as float seconds or None (no limit: -1 ns).
int64_t timeout_to_ns(const pybind11::object& timeout);

// A latency histogram's snapshot as stats() dicts show it: count, p50, p90, p99, p999, max, mean (ns).
pybind11::dict histogram_dict(const HistogramSnapshot& snapshot);

// Waits in slices of 100 ms so that Ctrl-C reaches a thread parked in the core: attempt(slice_ns)
// runs without the GIL and returns true once the wait is over (a result, a wake, a close). With no
// wait at all (timeout 0) the attempt keeps the GIL: it only takes a mutex for a moment.
template <typename Attempt>
void wait_in_slices(int64_t timeout_ns, Attempt&& attempt) {
  if (timeout_ns == 0) {
    attempt(int64_t{0});
    return;
  }
  constexpr int64_t kSliceNs = 100'000'000;
  int64_t waited = 0;
  while (true) {
    const int64_t slice = timeout_ns < 0 ? kSliceNs : std::min(kSliceNs, timeout_ns - waited);
    bool done;
    {
      GilRelease release;
      done = attempt(slice);
    }
    if (done) return;
    waited += slice;
    if (timeout_ns >= 0 && waited >= timeout_ns) return;
    if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
  }
}

// A Py_buffer held for the lifetime of this object (released with the GIL held: destroy it after
// any GilRelease scope that uses it).
class HeldBuffer {
 public:
  HeldBuffer(PyObject* obj, int flags) {
    if (PyObject_GetBuffer(obj, &view_, flags) != 0) throw pybind11::error_already_set();
  }
  ~HeldBuffer() { PyBuffer_Release(&view_); }
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  const Py_buffer& view() const { return view_; }

 private:
  Py_buffer view_{};
};

}  // namespace reactor::bindings
