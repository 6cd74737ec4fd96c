// FramePacer: each frame's pts on the core's clock, the producer's interruptible pacing wait, and the
// record of what was committed (counts, first/last pts, emit latency window).
#pragma once

#include <sys/prctl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "core/Clock.h"
#include "core/Error.h"

namespace reactor {

struct PaceDecision {
  int64_t pts_ns = 0;
  int64_t wait_ns = 0;  // how long the producer waits before committing (0: commit now)
};

// Note: the rules reactor_engine.pacing.FramePacer documents (that class wraps this one):
// - fixed rate (fps > 0): frame k of the session is due at t0 + k * period; a producer ahead of the
//   clock waits, one late by more than a period rebases t0 instead of bursting (late_frames).
// - automatic (fps == 0): a batch of N frames that took dt is stamped dt / N apart (at least the
//   max_fps period); the producer waits only when max_fps > 0 holds it back.
// Threads: begin_batch / next_frame / wait_until / record_commit run on the producer thread (with the
// GIL released); stop, reset and the figures on any thread. The producer's state is guarded by one
// mutex (uncontended: a few ns), the figures are atomics, so a stats reader never races the producer.
class FramePacer {
 public:
  static constexpr size_t kLatencyWindow = 4096;  // emit latency samples kept (the newest)

  FramePacer(double fps, double max_fps)
      : fps_(fps),
        max_fps_(max_fps),
        period_ns_(fps > 0 ? static_cast<int64_t>(1e9 / fps + 0.5) : 0),
        min_period_ns_(max_fps > 0 ? static_cast<int64_t>(1e9 / max_fps + 0.5) : 0) {
    RE_CHECK(fps >= 0, InvalidArgument, "fps must be >= 0 (0 = automatic); got ", fps);
    RE_CHECK(max_fps >= 0, InvalidArgument, "max_fps must be >= 0 (0 = no cap); got ", max_fps);
  }
  FramePacer(const FramePacer&) = delete;
  FramePacer& operator=(const FramePacer&) = delete;

  double fps() const { return fps_; }
  double max_fps() const { return max_fps_; }

  // A new session: forget the clock and the record, and end a previous stop().
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    has_t0_ = false;
    t0_ns_ = 0;
    k_ = 0;
    last_pts_ns_ = 0;
    has_last_batch_ = false;
    last_batch_ns_ = 0;
    batch_interval_ns_ = 0.0;
    stopped_ = false;
    interval_ns_.store(0.0, std::memory_order_relaxed);
    late_frames_.store(0, std::memory_order_relaxed);
    frames_committed_.store(0, std::memory_order_relaxed);
    first_commit_ns_.store(0, std::memory_order_relaxed);
    first_pts_ns_.store(0, std::memory_order_relaxed);
    last_commit_pts_ns_.store(0, std::memory_order_relaxed);
  }

  // Once per emit, before stamping its `frames` frames.
  void begin_batch(int64_t frames, int64_t now) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (has_last_batch_ && frames > 0) {
      const double interval = static_cast<double>(now - last_batch_ns_) / static_cast<double>(frames);
      const double smoothed = interval_ns_.load(std::memory_order_relaxed);
      interval_ns_.store(smoothed == 0.0 ? interval : smoothed + kSmoothing * (interval - smoothed),
                         std::memory_order_relaxed);
      batch_interval_ns_ = interval;
    }
    has_last_batch_ = true;
    last_batch_ns_ = now;
  }

  PaceDecision next_frame(int64_t now) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (period_ns_ == 0) {
      const int64_t spacing = std::max(static_cast<int64_t>(batch_interval_ns_), min_period_ns_);
      const int64_t pts = last_pts_ns_ ? std::max(now, last_pts_ns_ + spacing) : now;
      last_pts_ns_ = pts;
      return {pts, min_period_ns_ ? pts - now : 0};
    }
    if (!has_t0_) {
      has_t0_ = true;
      t0_ns_ = now;
    }
    int64_t due = t0_ns_ + k_ * period_ns_;
    if (now - due > period_ns_) {
      t0_ns_ = now - k_ * period_ns_;
      due = now;
      late_frames_.fetch_add(1, std::memory_order_relaxed);
    }
    ++k_;
    last_pts_ns_ = due;
    return {due, std::max<int64_t>(0, due - now)};
  }

  // Holds the calling thread until due_ns on the core's clock, or until stop(); false when stopped.
  // Note: the thread's timer slack is cut to 1 µs on its first wait (Linux's default, 50 µs, is the
  // granularity of every timed wait), so a frame's commit lands within microseconds of its pts.
  bool wait_until(int64_t due_ns) {
    static thread_local bool slack_set = false;
    if (!slack_set) {
      prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
      slack_set = true;
    }
    const std::chrono::steady_clock::time_point due{std::chrono::nanoseconds(due_ns)};
    std::unique_lock<std::mutex> lock(mutex_);
    return !wake_.wait_until(lock, due, [&] { return stopped_; });
  }

  // Any thread: cuts the current wait short, and every later one until reset().
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopped_ = true;
    }
    wake_.notify_all();
  }

  bool stopped() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stopped_;
  }

  // After a commit: started_ns is when the engine's part of the emit began (pacing wait excluded).
  void record_commit(int64_t started_ns, int64_t committed_ns, int64_t pts_ns) {
    const uint64_t n = frames_committed_.load(std::memory_order_relaxed);
    latency_[n % kLatencyWindow].store(committed_ns - started_ns, std::memory_order_relaxed);
    if (n == 0) {
      first_commit_ns_.store(committed_ns, std::memory_order_relaxed);
      first_pts_ns_.store(pts_ns, std::memory_order_relaxed);
    }
    last_commit_pts_ns_.store(pts_ns, std::memory_order_relaxed);
    frames_committed_.store(n + 1, std::memory_order_release);
  }

  double measured_fps() const {
    const double interval = interval_ns_.load(std::memory_order_relaxed);
    return interval > 0 ? 1e9 / interval : 0.0;
  }
  uint64_t late_frames() const { return late_frames_.load(std::memory_order_relaxed); }
  uint64_t frames_committed() const { return frames_committed_.load(std::memory_order_acquire); }
  int64_t first_commit_ns() const { return first_commit_ns_.load(std::memory_order_relaxed); }
  int64_t first_pts_ns() const { return first_pts_ns_.load(std::memory_order_relaxed); }
  int64_t last_pts_ns() const { return last_commit_pts_ns_.load(std::memory_order_relaxed); }
  // Copies the kept emit latency samples (ns), oldest slot first in storage order; returns how many.
  size_t latency_samples(int64_t* out, size_t capacity) const {
    const size_t kept = static_cast<size_t>(std::min<uint64_t>(frames_committed(), kLatencyWindow));
    const size_t n = std::min(kept, capacity);
    for (size_t i = 0; i < n; ++i) out[i] = latency_[i].load(std::memory_order_relaxed);
    return n;
  }

 private:
  static constexpr double kSmoothing = 0.25;  // weight of the newest interval in the automatic rate

  const double fps_, max_fps_;
  const int64_t period_ns_, min_period_ns_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopped_ = false;
  bool has_t0_ = false;
  int64_t t0_ns_ = 0;
  int64_t k_ = 0;
  int64_t last_pts_ns_ = 0;
  bool has_last_batch_ = false;
  int64_t last_batch_ns_ = 0;
  double batch_interval_ns_ = 0.0;

  std::atomic<double> interval_ns_{0.0};
  std::atomic<uint64_t> late_frames_{0};
  std::atomic<uint64_t> frames_committed_{0};
  std::atomic<int64_t> first_commit_ns_{0};
  std::atomic<int64_t> first_pts_ns_{0};
  std::atomic<int64_t> last_commit_pts_ns_{0};
  std::array<std::atomic<int64_t>, kLatencyWindow> latency_{};
};

}  // namespace reactor
