// Python-side handles shared between binding files (which object owns which core object).
#pragma once

#include <pybind11/pybind11.h>

#include <memory>

#include "core/HostArena.h"

namespace reactor::bindings {

// HostArena as Python sees it: close() drops this reference; views and rings keep their own.
struct ArenaHandle {
  std::shared_ptr<HostArena> arena;
  const std::shared_ptr<HostArena>& get() const;  // throws Closed after close()
};

// Timeouts arrive as float seconds or None (no limit: -1 ns).
int64_t timeout_to_ns(const pybind11::object& timeout);

}  // namespace reactor::bindings
