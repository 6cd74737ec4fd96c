// Bounded waits for the core's hand-offs that are usually over within microseconds: busy or polling.
#pragma once

#include <time.h>

#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/Clock.h"

namespace reactor {

// The CPU's spin-wait hint (x86 PAUSE, ARM YIELD): a hyperthread sibling gets the core meanwhile.
inline void cpu_relax() {
#if defined(__SSE2__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Spins until done() holds (true) or the clock passes deadline_ns (false); never sleeps.
template <typename Done>
bool spin_until(int64_t deadline_ns, Done done) {
  while (!done()) {
    for (int i = 0; i < 16; ++i) cpu_relax();
    if (now_ns() >= deadline_ns) return done();
  }
  return true;
}

// Looks at done() every step_ns (a nanosleep between looks, so the CPU is given away meanwhile) until
// it holds (true) or the clock passes deadline_ns (false). step_ns is under a second.
template <typename Done>
bool poll_until(int64_t deadline_ns, int64_t step_ns, Done done) {
  const timespec step{0, static_cast<long>(step_ns)};
  while (!done()) {
    if (now_ns() >= deadline_ns) return done();
    nanosleep(&step, nullptr);
  }
  return true;
}

}  // namespace reactor
