// InputRing: latest and fifo reads, holding, drop-oldest counting, refusal, reset, wake/close, producers.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/Error.h"
#include "core/InputRing.h"
#include "input_helpers.h"

using namespace reactor;
using reactor::testing::pattern;

namespace {

constexpr int64_t kW = 32, kH = 24;

// Writes a frame whose every byte is its value (the index, usually).
int64_t write_value(InputRing& ring, int value, int64_t arrival_ns = -1) {
  std::vector<uint8_t> frame(static_cast<size_t>(kW * kH * 3), static_cast<uint8_t>(value));
  return ring.write(frame.data(), kW, kH, FrameStrides{kW * 3, 3, 1}, -1, arrival_ns);
}

bool all_bytes_are(const InputRead& read, int value) {
  for (int64_t i = 0; i < read.meta.width * read.meta.height * 3; ++i) {
    if (read.data[i] != static_cast<uint8_t>(value)) return false;
  }
  return true;
}

}  // namespace

TEST(InputRing, LatestReadsTheNewestAndSkipsTheOlder) {
  InputRing ring(4, kW, kH);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(write_value(ring, i), i);
  InputRead out[4];
  ASSERT_EQ(ring.read(out, 1, true, 0), 1);
  EXPECT_EQ(out[0].meta.index, 2);
  EXPECT_TRUE(all_bytes_are(out[0], 2));
  EXPECT_EQ(ring.counters().frames_skipped.load(), 2u);
  EXPECT_EQ(ring.counters().frames_read.load(), 1u);
  EXPECT_EQ(ring.ready_count(), 0);
  // Nothing newer: nothing returned, and the current frame stays.
  EXPECT_EQ(ring.read(out, 1, true, 0), 0);
  InputRead current;
  ASSERT_TRUE(ring.current(&current));
  EXPECT_EQ(current.meta.index, 2);
  ring.release_held();
  ASSERT_TRUE(ring.current(&current));
  EXPECT_EQ(current.meta.index, 2);
  EXPECT_EQ(ring.held_count(), 1);
}

TEST(InputRing, FifoReadsOldestFirst) {
  InputRing ring(4, kW, kH);
  for (int i = 0; i < 3; ++i) write_value(ring, 10 + i);
  InputRead out[4];
  ASSERT_EQ(ring.read(out, 4, false, 0), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i].meta.index, i);
    EXPECT_TRUE(all_bytes_are(out[i], 10 + i));
  }
  EXPECT_EQ(ring.counters().frames_skipped.load(), 0u);
}

TEST(InputRing, HeldFramesAreNeverOverwritten) {
  InputRing ring(4, kW, kH);
  for (int i = 0; i < 3; ++i) write_value(ring, i);
  InputRead held[4];
  ASSERT_EQ(ring.read(held, 3, false, 0), 3);
  // One slot left for the producer: every new frame recycles the previous one.
  for (int i = 3; i < 9; ++i) write_value(ring, i);
  EXPECT_EQ(ring.counters().frames_dropped.load(), 5u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(all_bytes_are(held[i], i)) << "held frame " << i << " was overwritten";
  // The hold limit (slots - 1): nothing more until release_held.
  InputRead out[4];
  EXPECT_EQ(ring.read(out, 1, true, 0), 0);
  EXPECT_EQ(ring.read(out, 4, false, 0), 0);
  bool woken = false;
  EXPECT_EQ(ring.read(out, 1, true, -1, &woken), 0);  // no wait for what could not be handed out
  EXPECT_TRUE(woken);
  ring.release_held();  // frames 0 and 1 go back; 2 stays current
  EXPECT_EQ(ring.held_count(), 1);
  ASSERT_EQ(ring.read(out, 4, false, 0), 1);
  EXPECT_EQ(out[0].meta.index, 8);
  EXPECT_TRUE(all_bytes_are(out[0], 8));
}

TEST(InputRing, AFullRingDropsTheOldestReadyFramesAndCountsThem) {
  InputRing ring(4, kW, kH);
  for (int i = 0; i < 10; ++i) write_value(ring, i);
  EXPECT_EQ(ring.counters().frames_in.load(), 10u);
  EXPECT_EQ(ring.counters().frames_dropped.load(), 6u);
  InputRead out[4];
  ASSERT_EQ(ring.read(out, 4, false, 0), 3);  // 6, 7, 8 (three held at most)
  EXPECT_EQ(out[0].meta.index, 6);
  EXPECT_EQ(out[2].meta.index, 8);
  ring.release_held();
  ASSERT_EQ(ring.read(out, 4, false, 0), 1);
  EXPECT_EQ(out[0].meta.index, 9);
}

TEST(InputRing, AFrameLargerThanTheSlotsIsRefusedNamingBothSizes) {
  InputRing ring(2, kW, kH);
  std::vector<uint8_t> frame(static_cast<size_t>((kW + 1) * kH * 3));
  try {
    ring.write(frame.data(), kW + 1, kH, FrameStrides{(kW + 1) * 3, 3, 1}, -1, -1);
    FAIL() << "no FrameError";
  } catch (const FrameError& e) {
    EXPECT_NE(std::string(e.what()).find("33x24"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("32x24"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ring.counters().frames_refused.load(), 1u);
  EXPECT_EQ(ring.counters().frames_in.load(), 0u);
  EXPECT_EQ(write_value(ring, 1), 0);  // the ring goes on
}

TEST(InputRing, StridedWriteCopiesEachPixel) {
  InputRing ring(2, kW, kH);
  const std::vector<uint8_t> rgb = pattern(kW, kH, 3);
  std::vector<uint8_t> rgba(static_cast<size_t>(kW * kH * 4));
  for (int64_t i = 0; i < kW * kH; ++i)
    std::memcpy(&rgba[static_cast<size_t>(i * 4)], &rgb[static_cast<size_t>(i * 3)], 3);
  ring.write(rgba.data(), kW, kH, FrameStrides{kW * 4, 4, 1}, 5, 7);
  InputRead out;
  ASSERT_EQ(ring.read(&out, 1, true, 0), 1);
  EXPECT_EQ(std::memcmp(out.data, rgb.data(), rgb.size()), 0);
  EXPECT_EQ(out.meta.capture_ns, 5);
  EXPECT_EQ(out.meta.arrival_ns, 7);
  EXPECT_GE(out.meta.ready_ns, out.meta.arrival_ns);
}

TEST(InputRing, ResetDropsReadyHeldAndCurrentAndRestartsTheIndex) {
  InputRing ring(4, kW, kH);
  for (int i = 0; i < 3; ++i) write_value(ring, i);
  InputRead out[4];
  ASSERT_EQ(ring.read(out, 2, false, 0), 2);
  EXPECT_EQ(ring.reset(), 3);  // 2 held (one current) + 1 ready
  InputRead current;
  EXPECT_FALSE(ring.current(&current));
  EXPECT_EQ(ring.held_count(), 0);
  EXPECT_EQ(ring.read(out, 4, false, 0), 0);
  EXPECT_EQ(write_value(ring, 7), 0);
  ASSERT_EQ(ring.read(out, 1, true, 0), 1);
  EXPECT_EQ(out[0].meta.index, 0);
}

TEST(InputRing, AFrameAcquiredBeforeAResetIsDroppedAtCommit) {
  InputRing ring(2, kW, kH);
  const int slot = ring.acquire(kW, kH);
  ring.reset();
  EXPECT_EQ(ring.commit(slot, -1, -1), -1);
  EXPECT_EQ(ring.ready_count(), 0);
  EXPECT_EQ(write_value(ring, 1), 0);
}

TEST(InputRing, ATimedReadReturnsNothingAtTheTimeout) {
  InputRing ring(2, kW, kH);
  InputRead out;
  bool woken = true;
  EXPECT_EQ(ring.read(&out, 1, true, 20'000'000, &woken), 0);
  EXPECT_FALSE(woken);
}

TEST(InputRing, ABlockedReaderGetsTheNextFrame) {
  InputRing ring(2, kW, kH);
  std::atomic<int64_t> index{-1};
  std::thread reader([&] {
    InputRead out;
    if (ring.read(&out, 1, true, -1) == 1) index = out.meta.index;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  write_value(ring, 1);
  reader.join();
  EXPECT_EQ(index.load(), 0);
}

TEST(InputRing, WakeAndCloseEndABlockedRead) {
  InputRing ring(2, kW, kH);
  for (bool close : {false, true}) {
    std::atomic<bool> woken{false};
    std::atomic<int> got{-1};
    std::thread reader([&] {
      InputRead out;
      bool w = false;
      got = ring.read(&out, 1, true, -1, &w);
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
  EXPECT_TRUE(ring.closed());
  EXPECT_THROW(write_value(ring, 1), Closed);
}

TEST(InputRing, AWakeWithNoReaderEndsTheNextWaitOnce) {
  InputRing ring(2, kW, kH);
  ring.wake();
  InputRead out;
  bool woken = false;
  EXPECT_EQ(ring.read(&out, 1, true, -1, &woken), 0);  // returns at once
  EXPECT_TRUE(woken);
  EXPECT_EQ(ring.read(&out, 1, true, 10'000'000, &woken), 0);
  EXPECT_FALSE(woken);
}

TEST(InputRing, TwoProducersAndAReaderKeepOrderAndCountEveryFrame) {
  InputRing ring(3, kW, kH);
  constexpr int kPerProducer = 300;
  std::atomic<bool> done{false};
  auto produce = [&](int value) {
    for (int i = 0; i < kPerProducer; ++i) write_value(ring, value);
  };
  int64_t last = -1;
  bool ordered = true, intact = true;
  std::thread reader([&] {
    InputRead out[2];
    while (!done.load() || ring.ready_count() > 0) {
      const int n = ring.read(out, 2, false, 1'000'000);
      for (int i = 0; i < n; ++i) {
        ordered = ordered && out[i].meta.index > last;
        last = out[i].meta.index;
        intact = intact && (all_bytes_are(out[i], 1) || all_bytes_are(out[i], 2));
      }
      ring.release_held();
    }
  });
  std::thread a(produce, 1), b(produce, 2);
  a.join();
  b.join();
  done = true;
  reader.join();
  EXPECT_TRUE(ordered);
  EXPECT_TRUE(intact);
  const InputCounters& c = ring.counters();
  EXPECT_EQ(c.frames_in.load(), 2u * kPerProducer);
  EXPECT_EQ(c.frames_read.load() + c.frames_dropped.load() + c.frames_skipped.load(), 2u * kPerProducer);
}

TEST(InputRing, ConstructionChecksItsArguments) {
  EXPECT_THROW(InputRing(1, kW, kH), InvalidArgument);
  EXPECT_THROW(InputRing(2, 0, kH), InvalidArgument);
  EXPECT_THROW(InputRing(2, 70000, kH), InvalidArgument);
}
