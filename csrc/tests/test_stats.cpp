// Histogram bucketing and percentiles.
#include <gtest/gtest.h>

#include <cmath>

#include "core/Stats.h"

using namespace reactor;

TEST(Histogram, BucketsAreContiguousAndMonotonic) {
  for (int i = 0; i + 1 < Histogram::kBuckets; ++i) {
    EXPECT_EQ(Histogram::bucket_high(i) + 1, Histogram::bucket_low(i + 1)) << i;
  }
  for (int64_t v : {0LL, 1LL, 15LL, 16LL, 17LL, 1000LL, 123456789LL, 1LL << 40}) {
    const int b = Histogram::bucket_of(v);
    EXPECT_LE(Histogram::bucket_low(b), v);
    EXPECT_GE(Histogram::bucket_high(b), v);
  }
}

TEST(Histogram, PercentilesWithinBucketError) {
  Histogram h;
  for (int64_t v = 1; v <= 100000; ++v) h.record(v * 1000);
  const HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.count, 100000u);
  EXPECT_EQ(s.max, 100000LL * 1000);
  EXPECT_NEAR(static_cast<double>(s.p50), 50e6, 50e6 * 0.07);
  EXPECT_NEAR(static_cast<double>(s.p99), 99e6, 99e6 * 0.07);
  EXPECT_NEAR(s.mean, 50000.5 * 1000, 1.0);
  h.reset();
  EXPECT_EQ(h.snapshot().count, 0u);
}
