// HostArena: sizes, sub-allocation, bounds and the pinning report.
#include <gtest/gtest.h>

#include "core/Error.h"
#include "core/HostArena.h"

using namespace reactor;

TEST(HostArena, RoundsToPagesAndReportsPinning) {
  HostArena arena(1000, ArenaOptions{});
  EXPECT_GE(arena.size(), 1000u);
  EXPECT_EQ(arena.size() % 4096, 0u);
  EXPECT_FALSE(arena.pinning().empty());
  if (!arena.locked() && !arena.cuda_registered()) EXPECT_EQ(arena.pinning().rfind("none: ", 0), 0u);
  arena.data()[0] = 1;
  arena.data()[arena.size() - 1] = 2;
}

TEST(HostArena, NotLockingSaysWhy) {
  HostArena arena(4096, ArenaOptions{false, false, false});
  EXPECT_EQ(arena.pinning(), "none: locking not requested");
  EXPECT_EQ(arena.cuda(), "disabled");
  EXPECT_EQ(arena.hugepages(), "disabled");
}

TEST(HostArena, AllocatesAlignedUntilFull) {
  HostArena arena(8192, ArenaOptions{false, false, false});
  const size_t a = arena.allocate(100, 64);
  const size_t b = arena.allocate(100, 256);
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b % 256, 0u);
  EXPECT_GE(b, 100u);
  EXPECT_THROW(arena.allocate(8192, 64), AllocationError);
  EXPECT_THROW(arena.allocate(0, 64), InvalidArgument);
  EXPECT_THROW(arena.allocate(10, 3), InvalidArgument);
}

TEST(HostArena, RefusesBadSizesAndRanges) {
  EXPECT_THROW(HostArena(0, ArenaOptions{}), InvalidArgument);
  EXPECT_THROW(HostArena(-5, ArenaOptions{}), InvalidArgument);
  HostArena arena(4096, ArenaOptions{false, false, false});
  EXPECT_NO_THROW(arena.at(0, 4096));
  EXPECT_THROW(arena.at(1, 4096), InvalidArgument);
  EXPECT_THROW(arena.at(-1, 1), InvalidArgument);
}
