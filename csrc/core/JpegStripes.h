// StripedJpegEncoder: one JPEG encoded as horizontal stripes on several threads, joined by restart markers.
#pragma once

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/Codec.h"
#include "core/JpegEncoder.h"
#include "core/ThreadPolicy.h"

namespace reactor {

// Note: a frame of R MCU rows is cut into S stripes of ceil(R / S) MCU rows (the last may be
// shorter). Each stripe is encoded as a JPEG of its own whose restart interval is one stripe: the
// calling thread (the encoder thread) encodes stripe 0 straight into the output, and the S - 1
// helper threads the others into their buffers. The output is stripe 0's JPEG with the frame's
// height in its SOF marker, then each later stripe's entropy-coded data after an RSTn marker, then
// EOI: byte for byte the JPEG one encoder makes of the whole frame with that restart interval
// (test_jpeg_stripes.cpp). That holds because a restart starts the entropy coder afresh exactly as a
// new image does (DC predictions 0, the bit buffer padded with 1-bits to a byte), the Huffman and
// quantisation tables are the standard ones, and stripe edges are MCU-row edges, which neither
// libjpeg's downsampling nor its bottom-edge padding reaches across.
// Whatever stripe no helper has started when the caller has finished its own, the caller encodes
// itself: on a machine with no idle CPU the encode is a single-threaded one, never a wait for a
// helper that cannot run. The helpers' affinity leaves out the caller's CPU (set again only when the
// caller moves): woken by the caller, Linux placed the helper on the caller's own CPU, where it
// waited for the caller's stripe to end, so the caller did the other stripe too in 201 of 300 paced
// 720p frames and two threads saved nothing (encode p50 2.29 -> 2.29 ms on a 2-core VM); kept off
// it, the helper took 299 of 300 and the encode went 2.29 -> 1.28 ms (p99 2.82 -> 1.87).
// With threads == 1, or a frame too small to split (kMinStripePixels), the
// bytes are JpegEncoder's (TurboJPEG's) exactly: no restart markers.
// Owned by one thread (the encoder thread), which alone calls encode(); the helpers are started by
// the constructor and joined by the destructor. No allocation per frame.
class StripedJpegEncoder {
 public:
  static constexpr int kMaxThreads = 16;
  // A stripe is at least this many pixels: below it the hand-off to a helper (a futex wake-up and
  // the helper's first cache misses, tens of µs) costs more than half a stripe's encode saves.
  static constexpr int64_t kMinStripePixels = 128 * 1024;

  StripedJpegEncoder(int quality, Subsampling subsampling, int threads, ThreadPolicy policy = ThreadPolicy::Batch);
  ~StripedJpegEncoder();
  StripedJpegEncoder(const StripedJpegEncoder&) = delete;
  StripedJpegEncoder& operator=(const StripedJpegEncoder&) = delete;

  size_t max_bytes(int64_t width, int64_t height) const;
  // Reserves every encoder's memory and the helpers' stripe buffers for frames up to this size; a
  // larger frame is encoded whole on the calling thread.
  void reserve(int64_t max_width, int64_t max_height);
  // As JpegEncoder::encode; a helper's failure is raised here as EncodeError.
  size_t encode(const uint8_t* rgb, int64_t width, int64_t height, uint8_t* dst, size_t capacity);

  int threads() const { return threads_; }
  // The stripes a frame of this size is cut into (1: encoded whole).
  int stripes_for(int64_t width, int64_t height) const;
  // The MCU rows of each stripe but the last for a frame of this size, cut into stripes_for() stripes.
  int64_t stripe_mcu_rows(int64_t width, int64_t height) const;
  // 0, or the first errno a helper got applying the thread policy (it then runs normal).
  int helper_policy_error() const { return helper_policy_error_; }
  int64_t blocks_allocated() const;

 private:
  struct Job {
    const uint8_t* rgb = nullptr;
    int64_t width = 0;
    int64_t height = 0;
    int64_t stripe_rows = 0;  // pixel rows of each stripe but the last
    int64_t restart_mcus = 0;
    int stripes = 0;
  };
  struct Stripe {
    std::vector<uint8_t> buffer;  // stripes 1..S-1
    size_t size = 0;
    bool failed = false;
    std::string error;  // set only on failure
  };

  // Sets the helpers' affinity to the CPUs this process may use but `cpu` (the caller's), when the
  // caller is on another CPU than at the last call: a syscall per helper only when it moves.
  void keep_helpers_off(int cpu) noexcept;
  void helper_loop(int index) noexcept;
  int claim(uint64_t generation, int stripes) noexcept;  // the next unstarted stripe of that job, or -1
  void encode_stripe(JpegEncoder& encoder, const Job& job, int stripe) noexcept;
  void finish_stripe() noexcept;
  void wait_for_stripes() noexcept;
  size_t join(const Job& job, uint8_t* dst, size_t size0, size_t capacity) const;

  const int threads_;
  std::vector<std::unique_ptr<JpegEncoder>> encoders_;  // [0] the caller's, [i] helper i's
  std::vector<Stripe> stripes_;
  int64_t reserved_width_ = 0;
  int64_t reserved_height_ = 0;
  cpu_set_t allowed_cpus_;     // the constructing thread's affinity
  int helpers_kept_off_ = -1;  // the CPU the helpers' affinity leaves out, or -1

  std::mutex mutex_;
  std::condition_variable work_cv_;  // helpers wait for a job
  std::condition_variable done_cv_;  // the caller waits for the helpers' stripes
  Job job_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  bool caller_waiting_ = false;
  // (generation << 16) | next stripe to start: a helper still holding an older job claims nothing.
  std::atomic<uint64_t> claims_{0};
  std::atomic<int> pending_{0};  // stripes 1..S-1 of the current job not yet finished
  int helper_policy_error_ = 0;
  std::vector<std::thread> helpers_;
};

}  // namespace reactor
