// Histogram bucketing and percentile snapshots.
#include "core/Stats.h"

#include <algorithm>

namespace reactor {

int Histogram::bucket_of(int64_t ns) {
  if (ns < kSub) return ns < 0 ? 0 : static_cast<int>(ns);
  const auto v = static_cast<uint64_t>(ns);
  int exponent = 63 - __builtin_clzll(v);  // floor(log2 v) >= kSubBits
  if (exponent > kMaxExponent) return kBuckets - 1;
  const int sub = static_cast<int>(v >> (exponent - kSubBits)) - kSub;
  return kSub + (exponent - kSubBits) * kSub + sub;
}

int64_t Histogram::bucket_low(int index) {
  if (index < kSub) return index;
  const int exponent = (index - kSub) / kSub + kSubBits;
  const int sub = (index - kSub) % kSub;
  return static_cast<int64_t>(kSub + sub) << (exponent - kSubBits);
}

int64_t Histogram::bucket_high(int index) {
  if (index < kSub) return index;
  const int exponent = (index - kSub) / kSub + kSubBits;
  return bucket_low(index) + (int64_t{1} << (exponent - kSubBits)) - 1;
}

void Histogram::record(int64_t ns) {
  if (ns < 0) ns = 0;
  buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(ns, std::memory_order_relaxed);
  int64_t seen = max_.load(std::memory_order_relaxed);
  while (ns > seen && !max_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

HistogramSnapshot Histogram::snapshot() const {
  std::array<uint64_t, kBuckets> counts;
  uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
    total += counts[i];
  }
  HistogramSnapshot snap;
  snap.count = total;
  snap.max = max_.load(std::memory_order_relaxed);
  if (total == 0) return snap;
  snap.mean = static_cast<double>(sum_.load(std::memory_order_relaxed)) /
              static_cast<double>(count_.load(std::memory_order_relaxed));
  // A percentile is the midpoint of the bucket holding it, never above the exact maximum.
  auto percentile = [&](double q) {
    const auto rank = static_cast<uint64_t>(q * static_cast<double>(total - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts[i];
      if (seen >= rank) return std::min(snap.max, (bucket_low(i) + bucket_high(i)) / 2);
    }
    return snap.max;
  };
  snap.p50 = percentile(0.50);
  snap.p90 = percentile(0.90);
  snap.p99 = percentile(0.99);
  snap.p999 = percentile(0.999);
  return snap;
}

void Histogram::reset() {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
}

void Stats::reset() {
  for (auto& h : histograms_) h.reset();
  for (auto* c : {&counters.frames_committed, &counters.frames_encoded, &counters.frames_dropped_oldest,
                  &counters.frames_dropped_newest, &counters.frames_aborted, &counters.frames_discarded,
                  &counters.block_timeouts, &counters.encode_errors, &counters.encoder_wakeups}) {
    c->store(0, std::memory_order_relaxed);
  }
}

}  // namespace reactor
