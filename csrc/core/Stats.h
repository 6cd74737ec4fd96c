// Lock-free counters and log-linear latency histograms of one frame pipeline (ring + encoder).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace reactor {

// Which latency a histogram measures; names in Stats::kLatencyNames.
enum class Latency : int {
  Acquire = 0,     // producer waiting in FrameRing::acquire
  Copy,            // copying a frame into a slot (FrameRing::write)
  QueueWait,       // commit -> encoder takes the slot
  Encode,          // encode start -> end
  CommitToPacket,  // commit -> packet published
  PacketGap,       // between two published packets
  Count
};

struct HistogramSnapshot {
  uint64_t count = 0;
  int64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  double mean = 0.0;
};

// Note: log-linear buckets (16 per power of two, so at most ~6% relative error) over atomics: the
// encoder thread and the producer record without a lock, and a snapshot never stops them.
class Histogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kMaxExponent = 47;  // ~39 hours in ns; larger values land in the last bucket
  static constexpr int kBuckets = kSub + (kMaxExponent - kSubBits + 1) * kSub;

  void record(int64_t ns);
  HistogramSnapshot snapshot() const;
  void reset();

  static int bucket_of(int64_t ns);
  static int64_t bucket_low(int index);
  static int64_t bucket_high(int index);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<int64_t> sum_{0};
  std::atomic<int64_t> max_{0};
};

struct Counters {
  std::atomic<uint64_t> frames_committed{0};       // commits into the ring, drops included
  std::atomic<uint64_t> frames_encoded{0};         // packets published
  std::atomic<uint64_t> frames_dropped_oldest{0};  // ready frames overwritten under drop_oldest
  std::atomic<uint64_t> frames_dropped_newest{0};  // new frames refused under drop_newest
  std::atomic<uint64_t> frames_aborted{0};         // acquired slots given back without a commit
  std::atomic<uint64_t> frames_discarded{0};       // ready frames thrown away by FrameRing::reset
  std::atomic<uint64_t> block_timeouts{0};         // acquire timed out under block
  std::atomic<uint64_t> encode_errors{0};          // frames the encoder failed on
  std::atomic<uint64_t> encoder_wakeups{0};        // commits that had to wake a sleeping encoder
};

class Stats {
 public:
  static constexpr std::array<const char*, static_cast<int>(Latency::Count)> kLatencyNames = {
      "acquire", "copy", "queue_wait", "encode", "commit_to_packet", "packet_gap"};

  Counters counters;

  void record(Latency which, int64_t ns) { histograms_[static_cast<int>(which)].record(ns); }
  const Histogram& histogram(Latency which) const { return histograms_[static_cast<int>(which)]; }
  void reset();

 private:
  std::array<Histogram, static_cast<int>(Latency::Count)> histograms_;
};

}  // namespace reactor
