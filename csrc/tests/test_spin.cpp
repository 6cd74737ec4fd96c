// Spin.h: spin_until and poll_until end when the condition holds (set by another thread) or at the
// deadline, and look at the condition once more there.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/Clock.h"
#include "core/Spin.h"

using namespace reactor;

namespace {

constexpr int64_t kStepNs = 20'000;
constexpr int64_t kLongNs = 10'000'000'000;  // far beyond any wait here: ending by it is a failure

template <typename Wait>
void ends_when_another_thread_sets_the_flag(Wait wait) {
  std::atomic<bool> flag{false};
  std::thread setter([&] { flag.store(true, std::memory_order_release); });
  const int64_t deadline = now_ns() + kLongNs;
  EXPECT_TRUE(wait(deadline, [&] { return flag.load(std::memory_order_acquire); }));
  EXPECT_LT(now_ns(), deadline);
  setter.join();
}

}  // namespace

TEST(Spin, SpinUntilEndsWhenTheConditionHolds) {
  ends_when_another_thread_sets_the_flag([](int64_t deadline, auto done) { return spin_until(deadline, done); });
}

TEST(Spin, PollUntilEndsWhenTheConditionHolds) {
  ends_when_another_thread_sets_the_flag(
      [](int64_t deadline, auto done) { return poll_until(deadline, kStepNs, done); });
}

TEST(Spin, BothGiveUpAtTheDeadlineAndLookOnceMoreThere) {
  int looks = 0;
  const int64_t deadline = now_ns() + 2'000'000;
  EXPECT_FALSE(poll_until(deadline, kStepNs, [&] { return ++looks < 0; }));
  EXPECT_GE(now_ns(), deadline);
  EXPECT_GE(looks, 2);  // at least the first look and the one at the deadline
  EXPECT_FALSE(spin_until(now_ns() + 1'000'000, [] { return false; }));
  // A condition that holds by the deadline's look counts: true.
  int calls = 0;
  EXPECT_TRUE(poll_until(now_ns() - 1, kStepNs, [&] { return ++calls == 2; }));
  EXPECT_EQ(calls, 2);
}

TEST(Spin, AConditionThatAlreadyHoldsReturnsAtOnce) {
  int looks = 0;
  EXPECT_TRUE(poll_until(now_ns() + kLongNs, kStepNs, [&] { return ++looks > 0; }));
  EXPECT_EQ(looks, 1);
  EXPECT_TRUE(spin_until(now_ns() + kLongNs, [] { return true; }));
}
