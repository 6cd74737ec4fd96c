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

// Every output in outputs is enabled and popped; the first is the primary.
long allocations_for_frames(std::vector<CodecKind> outputs, int frames) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  CodecOptions options{outputs[0], 85, Subsampling::S420};
  Encoder encoder(ring, options, 4, std::vector<CodecKind>(outputs.begin() + 1, outputs.end()));
  for (CodecKind codec : outputs) encoder.set_output_enabled(codec, true);
  std::vector<uint8_t> frame(64 * 48 * 3, 128);
  const FrameStrides strides{64 * 3, 3, 1};
  int64_t index = 0;
  auto one_frame = [&] {
    // A moving edge, so that VP8 codes every frame, not skipped blocks; the 30 fps pts it needs.
    frame[static_cast<size_t>(index % (64 * 48)) * 3] ^= 0xFF;
    ring->write(frame.data(), 64, 48, strides, -1, index++ * 33'333'333, 1'000'000'000);
    for (CodecKind codec : outputs) {
      const int packet = encoder.queue_for(codec)->pop(1'000'000'000);
      if (packet < 0) std::abort();
      encoder.queue_for(codec)->release(packet);
    }
    if (index % 50 == 0) encoder.request_keyframe();  // the live controls too
    if (index % 70 == 0) encoder.set_bitrate(index % 140 == 0 ? 1'000'000 : 2'000'000);
  };
  for (int i = 0; i < 10; ++i) one_frame();  // warm-up: first-use allocations are allowed
  const long before = allocations.load();
  for (int i = 0; i < frames; ++i) one_frame();
  return allocations.load() - before;
}

long allocations_for_frames(CodecKind codec, int frames) {
  return allocations_for_frames(std::vector<CodecKind>{codec}, frames);
}

}  // namespace

TEST(SteadyState, RawFramesMakeNoHeapAllocation) { EXPECT_EQ(allocations_for_frames(CodecKind::Raw, 500), 0); }

TEST(SteadyState, I420FramesMakeNoHeapAllocation) { EXPECT_EQ(allocations_for_frames(CodecKind::I420, 500), 0); }

TEST(SteadyState, JpegFramesMakeNoCppHeapAllocation) {
  // libjpeg's own per-image pools use malloc, not operator new; this pins our code's share.
  EXPECT_EQ(allocations_for_frames(CodecKind::Jpeg, 500), 0);
}

TEST(SteadyState, Vp8FramesMakeNoCppHeapAllocation) {
  // libvpx's own buffers are malloc'd when the encoder opens (at construction), not per frame.
  EXPECT_EQ(allocations_for_frames(CodecKind::Vp8, 500), 0);
}

TEST(SteadyState, SeveralOutputsMakeNoCppHeapAllocation) {
  EXPECT_EQ(allocations_for_frames({CodecKind::Jpeg, CodecKind::Vp8, CodecKind::I420}, 300), 0);
}

TEST(SteadyState, TheCounterSeesAllocations) {
  const long before = allocations.load();
  auto* probe = new std::vector<int>(16);
  delete probe;
  EXPECT_GE(allocations.load() - before, 2);  // the vector and its buffer: the tests above can fail
}
