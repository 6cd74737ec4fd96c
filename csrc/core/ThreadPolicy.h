// How the kernel schedules the core's own threads (the encoder thread and its JPEG stripe helpers).
#pragma once

#include <pthread.h>

#include <string>

namespace reactor {

// Batch (the default): SCHED_BATCH, which only stops the thread's wake-ups from preempting the
//   thread that woke it; it still gets its fair share of the CPU.
// Normal: SCHED_OTHER, as any thread.
// Note: why Batch. When a commit wakes the encoder, Linux places it on the committing thread's CPU
// whenever its idle-CPU search finds nothing (on a 2-core VM it often finds nothing while the other
// core idles: perf sched showed the encoder preempting the producer on CPU 1 for a whole encode,
// 0.8 ms at 512x512, while CPU 0 ran idle). As a normal thread it preempts the producer at once,
// so the model's emit (or frame() commit) returns only after the encode: a paced 720p emit took 2.69 ms
// against a 0.69 ms np.copyto in the same run, 17-40 % of paced emits saw an involuntary context
// switch. As a batch thread it runs when the producer next sleeps or the other core takes it: in the
// same runs 1 % of emits were preempted, and delivery jitter and commit -> packet were no worse (docs/architecture.md).
enum class ThreadPolicy { Normal, Batch };
ThreadPolicy parse_thread_policy(const std::string& name);
const char* thread_policy_name(ThreadPolicy policy);
// Applies the policy to a running thread; returns 0 or the errno (a sandbox may refuse it).
int apply_thread_policy(pthread_t thread, ThreadPolicy policy) noexcept;

}  // namespace reactor
