// FrameRing: ordering and wraparound, each policy's counts, bad input, close, the copy; the paced
// write and its FramePacer.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "core/Clock.h"
#include "core/Error.h"
#include "core/FramePacer.h"
#include "core/FrameRing.h"

using namespace reactor;

namespace {

int64_t commit_frame(FrameRing& ring, uint8_t value, int64_t timeout_ns = 0) {
  const AcquiredSlot slot = ring.acquire(4, 2, timeout_ns);
  slot.data[0] = value;
  return ring.commit(slot.slot, slot.ticket);
}

// Takes one ready frame as the encoder would; returns its index and first byte.
std::pair<int64_t, uint8_t> take_one(FrameRing& ring) {
  std::atomic<bool> cancel{false};
  const int slot = ring.take(cancel);
  const auto out = std::make_pair(ring.meta(slot).frame_index, ring.slot_data(slot)[0]);
  ring.release(slot);
  return out;
}

}  // namespace

TEST(FrameRing, DeliversInCommitOrderAcrossWraparound) {
  FrameRing ring(3, 4, 2, RingPolicy::Block);
  std::vector<int> slots_seen;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 2; ++i) commit_frame(ring, static_cast<uint8_t>(round * 2 + i));
    for (int i = 0; i < 2; ++i) {
      const auto [index, value] = take_one(ring);
      EXPECT_EQ(index, round * 2 + i);
      EXPECT_EQ(value, round * 2 + i);
    }
  }
  EXPECT_EQ(ring.stats().counters.frames_committed.load(), 20u);
  EXPECT_EQ(ring.ready_count(), 0);
}

TEST(FrameRing, BlockPolicyTimesOutAndCounts) {
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  commit_frame(ring, 1);
  commit_frame(ring, 2);
  EXPECT_THROW(ring.acquire(4, 2, 1'000'000), Timeout);
  EXPECT_THROW(ring.acquire(4, 2, 0), Timeout);
  EXPECT_EQ(ring.stats().counters.block_timeouts.load(), 2u);
  EXPECT_EQ(take_one(ring).first, 0);
  EXPECT_NO_THROW(commit_frame(ring, 3));  // a slot came free
}

TEST(FrameRing, BlockPolicyWakesWhenTheConsumerReleases) {
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  commit_frame(ring, 1);
  commit_frame(ring, 2);
  std::thread consumer([&] { take_one(ring); });
  EXPECT_EQ(commit_frame(ring, 3, -1), 2);  // waits without limit until the consumer frees a slot
  consumer.join();
}

TEST(FrameRing, DropOldestKeepsTheNewestAndCounts) {
  FrameRing ring(3, 4, 2, RingPolicy::DropOldest);
  for (int i = 0; i < 10; ++i) commit_frame(ring, static_cast<uint8_t>(i));
  EXPECT_EQ(ring.stats().counters.frames_dropped_oldest.load(), 7u);
  EXPECT_EQ(ring.stats().counters.frames_committed.load(), 10u);
  for (int expected = 7; expected < 10; ++expected) EXPECT_EQ(take_one(ring).second, expected);
}

TEST(FrameRing, DropNewestKeepsTheOldestAndCounts) {
  FrameRing ring(3, 4, 2, RingPolicy::DropNewest);
  for (int i = 0; i < 10; ++i) {
    const AcquiredSlot slot = ring.acquire(4, 2, 0);
    EXPECT_EQ(slot.dropping, i >= 3);
    slot.data[0] = static_cast<uint8_t>(i);
    ring.commit(slot.slot, slot.ticket);
  }
  EXPECT_EQ(ring.stats().counters.frames_dropped_newest.load(), 7u);
  for (int expected = 0; expected < 3; ++expected) EXPECT_EQ(take_one(ring).second, expected);
}

TEST(FrameRing, AbortReturnsTheSlotAndCounts) {
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  const AcquiredSlot slot = ring.acquire(4, 2, 0);
  ring.abort(slot.slot, slot.ticket);
  EXPECT_EQ(ring.stats().counters.frames_aborted.load(), 1u);
  EXPECT_THROW(ring.commit(slot.slot, slot.ticket), StateError);
  EXPECT_EQ(ring.ready_count(), 0);
}

TEST(FrameRing, RefusesBadInput) {
  EXPECT_THROW(FrameRing(1, 4, 4, RingPolicy::Block), InvalidArgument);
  EXPECT_THROW(FrameRing(4, 0, 4, RingPolicy::Block), InvalidArgument);
  EXPECT_THROW(FrameRing(4, 4, -1, RingPolicy::Block), InvalidArgument);
  EXPECT_THROW(parse_ring_policy("latest"), InvalidArgument);
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  EXPECT_THROW(ring.acquire(5, 2, 0), FrameError);
  EXPECT_THROW(ring.acquire(0, 2, 0), FrameError);
  const AcquiredSlot slot = ring.acquire(4, 2, 0);
  EXPECT_THROW(ring.acquire(4, 2, 0), StateError);  // one producer: commit first
  EXPECT_THROW(ring.commit(slot.slot, slot.ticket + 1), StateError);
  EXPECT_THROW(ring.commit(7, slot.ticket), StateError);
  ring.commit(slot.slot, slot.ticket);
  EXPECT_THROW(ring.commit(slot.slot, slot.ticket), StateError);  // double commit
}

TEST(FrameRing, CloseWakesAWaitingProducerAndRefusesUse) {
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  commit_frame(ring, 1);
  commit_frame(ring, 2);
  std::thread closer([&] { ring.close(); });
  EXPECT_THROW(ring.acquire(4, 2, -1), Closed);
  closer.join();
  EXPECT_THROW(ring.acquire(4, 2, 0), Closed);
  std::atomic<bool> cancel{false};
  EXPECT_EQ(ring.take(cancel), -1);
}

TEST(FrameRing, ResetDiscardsReadyFramesAndRestartsIndices) {
  FrameRing ring(3, 4, 2, RingPolicy::Block);
  commit_frame(ring, 1);
  commit_frame(ring, 2);
  EXPECT_EQ(ring.reset(), 2);
  EXPECT_EQ(ring.stats().counters.frames_discarded.load(), 2u);
  EXPECT_EQ(commit_frame(ring, 3), 0);
}

TEST(FrameRing, WriteCopiesStridedFrames) {
  FrameRing ring(2, 3, 2, RingPolicy::Block);
  // A CHW-ordered source read as HWC through strides: channel stride = H*W, pixel stride = 1.
  uint8_t chw[3 * 2 * 3];
  for (int i = 0; i < 18; ++i) chw[i] = static_cast<uint8_t>(i);
  ring.write(chw, 3, 2, FrameStrides{3, 1, 6}, -1, -1, 0);
  std::atomic<bool> cancel{false};
  const int slot = ring.take(cancel);
  const uint8_t* out = ring.slot_data(slot);
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 3; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(out[(y * 3 + x) * 3 + c], chw[c * 6 + y * 3 + x]);
    }
  }
  ring.release(slot);
}

TEST(FrameRing, WriteStreamsLargeFramesAndKeepsEveryByte) {
  // 320x280x3 = 268800 bytes: over the streaming-store threshold, with an unaligned row length, once
  // packed (one span) and once with a padded row stride (row by row).
  const int64_t width = 320, height = 280;
  FrameRing ring(2, width + 1, height, RingPolicy::DropOldest);
  for (const int64_t row_stride : {width * 3, width * 3 + 7}) {
    std::vector<uint8_t> src(static_cast<size_t>(row_stride * height));
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 31 + 7);
    ring.write(src.data(), width, height, FrameStrides{row_stride, 3, 1}, -1, -1, 0);
    std::atomic<bool> cancel{false};
    const int slot = ring.take(cancel);
    const uint8_t* out = ring.slot_data(slot);
    bool same = true;
    for (int64_t y = 0; y < height; ++y) {
      same = same && std::equal(out + y * width * 3, out + (y + 1) * width * 3, src.data() + y * row_stride);
    }
    ring.release(slot);
    EXPECT_TRUE(same) << "row stride " << row_stride;
  }
}

TEST(FrameRing, TryAcquireNeverWaitsUnderBlock) {
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  AcquiredSlot slot;
  ASSERT_TRUE(ring.try_acquire(4, 2, slot));
  ring.commit(slot.slot, slot.ticket);
  commit_frame(ring, 2);
  EXPECT_FALSE(ring.try_acquire(4, 2, slot));  // both slots ready: block would wait
  EXPECT_EQ(ring.stats().counters.block_timeouts.load(), 0u);
  take_one(ring);
  EXPECT_TRUE(ring.try_acquire(4, 2, slot));
  EXPECT_THROW(ring.try_acquire(4, 2, slot), StateError);  // one producer: commit first
}

TEST(FrameRing, CommitWakesAConsumerAsleepInTake) {
  FrameRing ring(2, 4, 2, RingPolicy::Block);
  std::atomic<int64_t> taken{-1};
  std::thread consumer([&] { taken = take_one(ring).first; });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // most likely asleep in take() by now
  commit_frame(ring, 9);
  consumer.join();
  EXPECT_EQ(taken.load(), 0);
}

TEST(FramePacer, WritePacedStampsAtTheFixedRateAndRecordsEachCommit) {
  FrameRing ring(4, 4, 2, RingPolicy::DropOldest);
  FramePacer pacer(200, 0);  // 5 ms apart
  const uint8_t src[4 * 2 * 3] = {};
  pacer.begin_batch(3, now_ns());
  const int64_t started = now_ns();
  for (int i = 0; i < 3; ++i) ring.write_paced(src, 4, 2, FrameStrides{12, 3, 1}, pacer, 0);
  EXPECT_GE(now_ns() - started, 10'000'000);  // frames 2 and 3 waited for their turn
  EXPECT_EQ(pacer.frames_committed(), 3u);
  // Exact spacing unless a frame came over a period late (a loaded machine): then the pacer rebased
  // its clock on that frame (counted), and the frames are still at least a period apart.
  const bool on_time = pacer.late_frames() == 0;
  if (on_time) EXPECT_EQ(pacer.last_pts_ns() - pacer.first_pts_ns(), 10'000'000);
  int64_t latency[8];
  ASSERT_EQ(pacer.latency_samples(latency, 8), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_GT(latency[i], 0);
  std::atomic<bool> cancel{false};
  int64_t previous = -1;
  for (int i = 0; i < 3; ++i) {
    const int slot = ring.take(cancel);
    if (previous >= 0 && on_time) EXPECT_EQ(ring.meta(slot).pts_ns - previous, 5'000'000);
    if (previous >= 0) EXPECT_GE(ring.meta(slot).pts_ns - previous, 5'000'000);
    previous = ring.meta(slot).pts_ns;
    ring.release(slot);
  }
}

TEST(FramePacer, StopFromAnotherThreadEndsAWaitAndLaterOnesUntilReset) {
  FramePacer pacer(1, 0);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pacer.stop();
  });
  EXPECT_FALSE(pacer.wait_until(now_ns() + 60'000'000'000));  // a minute away: cut short
  stopper.join();
  EXPECT_FALSE(pacer.wait_until(now_ns() + 60'000'000'000));
  pacer.reset();
  EXPECT_TRUE(pacer.wait_until(now_ns() + 1'000'000));
}

namespace {

// A consumer thread that takes every frame; `taken` counts them, so the producer can wait for each.
struct Consumer {
  FrameRing& ring;
  std::atomic<bool> cancel{false};
  std::atomic<int> taken{0};
  std::thread thread;

  explicit Consumer(FrameRing& r)
      : ring(r), thread([this] {
          for (;;) {
            const int slot = ring.take(cancel);
            if (slot < 0) return;
            ring.release(slot);
            taken.fetch_add(1);
          }
        }) {}
  ~Consumer() {
    cancel = true;
    ring.wake_consumer();
    thread.join();
  }
  void wait_for(int count) const {
    while (taken.load() < count) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
};

}  // namespace

TEST(FrameRing, CommitWakesOnlyAConsumerThatSleeps) {
  // No spinning: the consumer sleeps in take() and every commit that comes later must wake it.
  FrameRing ring(3, 4, 2, RingPolicy::Block, nullptr, 0);
  Consumer consumer(ring);
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    commit_frame(ring, static_cast<uint8_t>(i));
    consumer.wait_for(i + 1);
  }
  EXPECT_EQ(ring.stats().counters.encoder_wakeups.load(), 4u);
}

TEST(FrameRing, ASpinningConsumerNeedsNoWakeUp) {
  // A window far longer than any commit takes to come: the consumer is always spinning at the commit.
  FrameRing ring(3, 4, 2, RingPolicy::Block, nullptr, 30'000'000'000);
  Consumer consumer(ring);
  for (int i = 0; i < 20; ++i) {
    commit_frame(ring, static_cast<uint8_t>(i));
    consumer.wait_for(i + 1);
  }
  EXPECT_EQ(ring.stats().counters.encoder_wakeups.load(), 0u);
}

TEST(FrameRing, TheConsumerSpinsOnlyAfterAShortWait) {
  // Window 50 ms. The first wait (200 ms) outlasts it: the consumer spun, slept, and is woken; the
  // next take() sleeps at once, so a commit 1 ms later wakes it too; that wait was short, so from
  // then on it spins and the commits that follow wake nothing.
  FrameRing ring(3, 4, 2, RingPolicy::Block, nullptr, 50'000'000);
  Consumer consumer(ring);
  const int gaps_ms[] = {200, 1, 1, 1, 1};
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(gaps_ms[i]));
    commit_frame(ring, static_cast<uint8_t>(i));
    consumer.wait_for(i + 1);
  }
  EXPECT_EQ(ring.stats().counters.encoder_wakeups.load(), 2u);
}

TEST(FrameRing, TheConsumerWatchesForTheExpectedCommitOfASteadyProducer) {
  // A producer at 100 fps: once the consumer knows the rate (kPeriods intervals), it sleeps until just
  // before each expected commit and polls through it, so the commits that follow need (almost) no
  // wake-up; a commit that the OS delays past the window still wakes it, hence the margin. On a busy
  // machine (the sanitizer builds run beside the JPEG tests on 2 CPUs) the consumer can be scheduled
  // after a whole round of windows, so the steady part runs up to kRounds rounds of kSteady commits
  // and one round under the margin shows the watch; without it every commit of every round wakes it.
  FrameRing ring(3, 4, 2, RingPolicy::Block, nullptr, FrameRing::kSpinNs);
  Consumer consumer(ring);
  constexpr int kWarm = FrameRing::kPeriods + 2, kSteady = 20, kRounds = 5;
  auto tick = std::chrono::steady_clock::now();
  int committed = 0;
  const auto commit_every_10ms = [&](int count) {
    for (int i = 0; i < count; ++i, ++committed) {
      tick += std::chrono::milliseconds(10);
      std::this_thread::sleep_until(tick);
      commit_frame(ring, static_cast<uint8_t>(committed));
      consumer.wait_for(committed + 1);
    }
    return ring.stats().counters.encoder_wakeups.load();
  };
  uint64_t before = commit_every_10ms(kWarm);
  EXPECT_GE(before, 1u);  // before it knew the rate, it slept through the commits
  uint64_t fewest = UINT64_MAX;
  for (int round = 0; round < kRounds && fewest >= kSteady / 2; ++round) {
    const uint64_t after = commit_every_10ms(kSteady);
    fewest = std::min(fewest, after - before);
    before = after;
  }
  EXPECT_LT(fewest, static_cast<uint64_t>(kSteady / 2));
}

TEST(FrameRing, AProducerThatStopsLeavesTheConsumerAsleep) {
  // After kMaxMisses windows without a commit the consumer stops watching and sleeps: the commit that
  // comes much later has to wake it, and is taken.
  FrameRing ring(3, 4, 2, RingPolicy::Block, nullptr, FrameRing::kSpinNs);
  Consumer consumer(ring);
  auto tick = std::chrono::steady_clock::now();
  constexpr int kCommits = FrameRing::kPeriods + 4;
  for (int i = 0; i < kCommits; ++i) {
    tick += std::chrono::milliseconds(5);
    std::this_thread::sleep_until(tick);
    commit_frame(ring, static_cast<uint8_t>(i));
    consumer.wait_for(i + 1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5 * (FrameRing::kMaxMisses + 1) + 100));
  const uint64_t before = ring.stats().counters.encoder_wakeups.load();
  commit_frame(ring, 99);
  consumer.wait_for(kCommits + 1);
  EXPECT_EQ(ring.stats().counters.encoder_wakeups.load(), before + 1);
}

TEST(FrameRing, ASpinningConsumerSeesCancelAndClose) {
  // A 30 s window: the take() returns at the cancel or the close, not when the window ends.
  FrameRing ring(3, 4, 2, RingPolicy::Block, nullptr, 30'000'000'000);
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cancel = true;
    ring.wake_consumer();
  });
  EXPECT_EQ(ring.take(cancel), -1);
  canceller.join();
  cancel = false;
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ring.close();
  });
  const int64_t started = now_ns();
  EXPECT_EQ(ring.take(cancel), -1);
  EXPECT_LT(now_ns() - started, 20'000'000'000);  // the close ended the spin, not the 30 s window
  closer.join();
  EXPECT_THROW(FrameRing(3, 4, 2, RingPolicy::Block, nullptr, -2), InvalidArgument);
}

TEST(FrameRing, SpinsByDefaultOnlyWhereAnotherCpuCanCommit) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  ASSERT_EQ(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
  EXPECT_EQ(FrameRing(3, 4, 2, RingPolicy::Block).spin_ns(), CPU_COUNT(&cpus) < 2 ? 0 : FrameRing::kSpinNs);
  // On one CPU (this thread's affinity narrowed, as a container's cpuset would): no spinning.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const int64_t on_one = FrameRing(3, 4, 2, RingPolicy::Block).spin_ns();
  ASSERT_EQ(sched_setaffinity(0, sizeof(cpus), &cpus), 0);
  EXPECT_EQ(on_one, 0);
  EXPECT_EQ(FrameRing(3, 4, 2, RingPolicy::Block, nullptr, 7).spin_ns(), 7);
}
