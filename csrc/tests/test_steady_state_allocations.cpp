// The frame loop makes no C++ heap allocation: write -> encode -> publish -> pop -> release, counted.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/Encoder.h"

namespace {
std::atomic<long> allocations{0};
}  // namespace

// Note: replacing the global operator new is why this test is its own executable.
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace reactor;

namespace {

long allocations_for_frames(CodecKind codec, int frames) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{codec, 85, Subsampling::S420}, 4);
  std::vector<uint8_t> frame(64 * 48 * 3, 128);
  const FrameStrides strides{64 * 3, 3, 1};
  auto one_frame = [&] {
    ring->write(frame.data(), 64, 48, strides, -1, -1, 1'000'000'000);
    const int index = encoder.queue()->pop(1'000'000'000);
    if (index < 0) std::abort();
    encoder.queue()->release(index);
  };
  for (int i = 0; i < 10; ++i) one_frame();  // warm-up: first-use allocations are allowed
  const long before = allocations.load();
  for (int i = 0; i < frames; ++i) one_frame();
  return allocations.load() - before;
}

}  // namespace

TEST(SteadyState, RawFramesMakeNoHeapAllocation) { EXPECT_EQ(allocations_for_frames(CodecKind::Raw, 500), 0); }

TEST(SteadyState, I420FramesMakeNoHeapAllocation) { EXPECT_EQ(allocations_for_frames(CodecKind::I420, 500), 0); }

TEST(SteadyState, JpegFramesMakeNoCppHeapAllocation) {
  // libjpeg's own per-image pools use malloc, not operator new; this pins our code's share.
  EXPECT_EQ(allocations_for_frames(CodecKind::Jpeg, 500), 0);
}

TEST(SteadyState, TheCounterSeesAllocations) {
  const long before = allocations.load();
  auto* probe = new std::vector<int>(16);
  delete probe;
  EXPECT_GE(allocations.load() - before, 2);  // the vector and its buffer: the tests above can fail
}
