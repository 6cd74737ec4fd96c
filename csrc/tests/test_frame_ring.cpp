// FrameRing: ordering and wraparound, each policy's counts, bad input, close.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/Error.h"
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
