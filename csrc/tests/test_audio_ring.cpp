// AudioRing: FIFO order across the wrap, pts per write, overflow counting, waits, wake/close, eventfd.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "core/AudioRing.h"
#include "core/Error.h"

using namespace reactor;

namespace {

constexpr int64_t kRate = 48000;
constexpr int64_t kSec = 1'000'000'000;

// Stereo frames whose samples count up from first: frame i is (2i, 2i + 1) + 2 * first.
std::vector<int16_t> ramp(int64_t first, int64_t frames) {
  std::vector<int16_t> samples(static_cast<size_t>(frames * 2));
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<int16_t>(2 * first + static_cast<int64_t>(i));
  return samples;
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace

TEST(AudioRing, ReadsComeOutInOrderAcrossTheWrapWithTheirPts) {
  AudioRing ring(kRate, 2, 100);
  auto a = ramp(0, 70);
  EXPECT_EQ(ring.write(a.data(), 70, 1'000'000), 0);
  std::vector<int16_t> out(200);
  auto got = ring.read(out.data(), 50, 1, 0);
  EXPECT_EQ(got.first, 50);
  EXPECT_EQ(got.second, 1'000'000);
  EXPECT_EQ(out[0], 0);
  EXPECT_EQ(out[99], 99);
  auto b = ramp(70, 70);  // wraps around the end of the buffer
  EXPECT_EQ(ring.write(b.data(), 70, 1'000'000 + 70 * kSec / kRate), 0);
  EXPECT_EQ(ring.available(), 90);
  got = ring.read(out.data(), 100, 1, 0);
  EXPECT_EQ(got.first, 90);
  EXPECT_EQ(got.second, 1'000'000 + 50 * kSec / kRate);
  for (int64_t i = 0; i < 180; ++i) ASSERT_EQ(out[static_cast<size_t>(i)], 100 + i) << i;
  const AudioCounters& c = ring.counters();
  EXPECT_EQ(c.frames_in.load(), 140u);
  EXPECT_EQ(c.frames_out.load(), 140u);
  EXPECT_EQ(c.writes.load(), 2u);
  EXPECT_EQ(c.reads.load(), 2u);
}

TEST(AudioRing, PtsFollowsAGapBetweenWrites) {
  AudioRing ring(kRate, 2, 1000);
  auto a = ramp(0, 10), b = ramp(10, 10);
  ring.write(a.data(), 10, 0);
  ring.write(b.data(), 10, 5'000'000'000);
  std::vector<int16_t> out(40);
  EXPECT_EQ(ring.read(out.data(), 5, 1, 0).second, 0);
  EXPECT_EQ(ring.read(out.data(), 5, 1, 0).second, 5 * kSec / kRate);
  EXPECT_EQ(ring.read(out.data(), 20, 1, 0).second, 5'000'000'000);
  EXPECT_EQ(ring.read(out.data(), 20, 1, 0), std::make_pair(int64_t{0}, int64_t{-1}));
}

TEST(AudioRing, AFullRingOverwritesTheOldestAndCountsIt) {
  AudioRing ring(kRate, 2, 100);
  auto a = ramp(0, 60);
  EXPECT_EQ(ring.write(a.data(), 60, 0), 0);
  auto b = ramp(60, 60);
  EXPECT_EQ(ring.write(b.data(), 60, 60 * kSec / kRate), 20);
  auto c = ramp(120, 150);  // more than the ring holds in one write
  EXPECT_EQ(ring.write(c.data(), 150, 120 * kSec / kRate), 150);
  EXPECT_EQ(ring.counters().frames_dropped.load(), 170u);
  std::vector<int16_t> out(400);
  const auto got = ring.read(out.data(), 200, 1, 0);
  EXPECT_EQ(got.first, 100);
  EXPECT_EQ(out[0], 2 * 170);  // the last 100 frames: 170..269
  EXPECT_EQ(got.second, 170 * kSec / kRate);
}

TEST(AudioRing, MinFramesWaitsForEnoughOrTheTimeout) {
  AudioRing ring(kRate, 1, 1000);
  std::vector<int16_t> samples(10, 7), out(100);
  ring.write(samples.data(), 10);
  // Not enough by the timeout: whatever is there.
  EXPECT_EQ(ring.read(out.data(), 100, 50, 20'000'000).first, 10);
  std::atomic<int64_t> got{0};
  std::thread reader([&] { got = ring.read(out.data(), 100, 50, -1).first; });
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ring.write(samples.data(), 10);
  }
  reader.join();
  EXPECT_GE(got.load(), 50);
}

TEST(AudioRing, WakeAndCloseEndABlockedRead) {
  AudioRing ring(kRate, 1, 100);
  for (bool close : {false, true}) {
    std::atomic<int64_t> got{-1};
    std::atomic<bool> woken{false};
    std::thread reader([&] {
      std::vector<int16_t> out(10);
      bool w = false;
      got = ring.read(out.data(), 10, 1, -1, &w).first;
      woken = w;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (close) {
      ring.close();
    } else {
      ring.wake();
    }
    reader.join();
    EXPECT_EQ(got.load(), 0);
    EXPECT_TRUE(woken.load());
  }
  std::vector<int16_t> samples(4);
  EXPECT_THROW(ring.write(samples.data(), 4), Closed);
}

TEST(AudioRing, TheEventFdIsReadableWhileNotifyFramesAreBuffered) {
  AudioRing ring(kRate, 1, 100, 10);
  std::vector<int16_t> samples(10), out(100);
  EXPECT_FALSE(readable(ring.event_fd()));
  ring.write(samples.data(), 5);
  EXPECT_FALSE(readable(ring.event_fd()));
  ring.write(samples.data(), 5);
  EXPECT_TRUE(readable(ring.event_fd()));
  ring.clear_event();  // still 10 buffered: readable again
  EXPECT_TRUE(readable(ring.event_fd()));
  ring.read(out.data(), 4, 1, 0);
  EXPECT_FALSE(readable(ring.event_fd()));
  ring.write(samples.data(), 10);
  EXPECT_TRUE(readable(ring.event_fd()));
  EXPECT_EQ(ring.reset(), 16);
  EXPECT_FALSE(readable(ring.event_fd()));
  EXPECT_EQ(ring.available(), 0);
  ring.close();
  EXPECT_TRUE(readable(ring.event_fd()));
}

TEST(AudioRing, ResetForgetsThePts) {
  AudioRing ring(kRate, 1, 100);
  std::vector<int16_t> samples(10), out(10);
  ring.write(samples.data(), 10, 123);
  ring.reset();
  ring.write(samples.data(), 10, 456);
  EXPECT_EQ(ring.read(out.data(), 10, 1, 0).second, 456);
}

TEST(AudioRing, ManyWritesBeyondTheAnchorsKeepPtsContinuous) {
  AudioRing ring(kRate, 1, 48000);
  std::vector<int16_t> samples(10), out(48000);
  for (int i = 0; i < AudioRing::kAnchors + 50; ++i) ring.write(samples.data(), 10, i * 10 * kSec / kRate);
  const auto got = ring.read(out.data(), 48000, 1, 0);
  EXPECT_EQ(got.first, (AudioRing::kAnchors + 50) * 10);
  EXPECT_EQ(got.second, 0);  // extrapolated back from the oldest anchor kept
}

TEST(AudioRing, AProducerAndAConsumerOnTwoThreadsLoseNothing) {
  AudioRing ring(kRate, 2, 4096);
  constexpr int64_t kFrames = 48000;
  std::thread producer([&] {
    for (int64_t first = 0; first < kFrames; first += 480) {
      auto block = ramp(first, 480);
      while (ring.available() > 4096 - 480) std::this_thread::yield();
      ring.write(block.data(), 480);
    }
  });
  std::vector<int16_t> out(2 * 1000);
  int64_t next = 0;
  bool ordered = true;
  while (next < kFrames) {
    const auto got = ring.read(out.data(), 1000, 1, 100'000'000);
    for (int64_t i = 0; i < got.first * 2; ++i)
      ordered = ordered && out[static_cast<size_t>(i)] == static_cast<int16_t>(2 * next + i);
    next += got.first;
  }
  producer.join();
  EXPECT_TRUE(ordered);
  EXPECT_EQ(ring.counters().frames_dropped.load(), 0u);
}

TEST(AudioRing, ConstructionChecksItsArguments) {
  EXPECT_THROW(AudioRing(0, 1, 100), InvalidArgument);
  EXPECT_THROW(AudioRing(kRate, 0, 100), InvalidArgument);
  EXPECT_THROW(AudioRing(kRate, 1, 0), InvalidArgument);
  EXPECT_THROW(AudioRing(kRate, 1, 100, 101), InvalidArgument);
}
