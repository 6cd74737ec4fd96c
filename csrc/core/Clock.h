// The one clock of the core: steady_clock in nanoseconds (CLOCK_MONOTONIC, as Python's time.monotonic_ns).
#pragma once

#include <chrono>
#include <cstdint>

namespace reactor {

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace reactor
