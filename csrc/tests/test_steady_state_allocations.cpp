// The frame loops make no C++ heap allocation, counted: output (write -> encode -> publish -> pop ->
// release) and input (submit -> decode -> commit -> read -> release_held; the copying write; audio).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/AudioRing.h"
#include "core/Decoder.h"
#include "core/Encoder.h"
#include "input_helpers.h"

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

constexpr int64_t kInW = 320, kInH = 240;
constexpr int kWarmUp = 10;

// Packets made before counting; each is submitted, decoded into the ring and read, then released.
long allocations_for_input(InputCodec codec, int frames) {
  std::vector<std::vector<uint8_t>> packets;
  if (codec == InputCodec::Vp8) {
    std::set<int> keyframes;  // periodic key frames too: same size, no new libvpx buffers
    for (int i = 60; i < frames + kWarmUp; i += 60) keyframes.insert(i);
    for (auto& e : reactor::testing::vp8_stream(kInW, kInH, frames + kWarmUp, keyframes)) packets.push_back(e.bytes);
  } else {
    for (int i = 0; i < 8; ++i) packets.push_back(reactor::testing::jpeg_frame(kInW, kInH, i).bytes);
  }
  auto ring = std::make_shared<InputRing>(4, kInW, kInH);
  Decoder decoder(ring, codec, 4, 1 << 20);
  InputRead out[2];
  auto one_frame = [&](int i) {
    const auto& packet = packets[static_cast<size_t>(i) % packets.size()];
    decoder.submit(packet.data(), packet.size(), -1, -1);
    if (!decoder.wait_idle(1'000'000'000)) std::abort();
    if (ring->read(out, 1, i % 2 == 0, 0) != 1) std::abort();  // latest and fifo reads alike
    if (decoder.counters().decode_errors.load() != 0) std::abort();
    ring->release_held();
  };
  for (int i = 0; i < kWarmUp; ++i) one_frame(i);
  const long before = allocations.load();
  for (int i = kWarmUp; i < kWarmUp + frames; ++i) one_frame(i);
  return allocations.load() - before;
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

TEST(SteadyState, Vp8InputMakesNoCppHeapAllocation) {
  // libvpx sizes its frame buffers at the first key frame (malloc, not per frame).
  EXPECT_EQ(allocations_for_input(InputCodec::Vp8, 300), 0);
}

TEST(SteadyState, JpegInputMakesNoCppHeapAllocation) { EXPECT_EQ(allocations_for_input(InputCodec::Jpeg, 300), 0); }

TEST(SteadyState, CopiedInputFramesAndAudioMakeNoHeapAllocation) {
  InputRing ring(4, 64, 48);
  AudioRing audio(48000, 2, 4800, 960);
  std::vector<uint8_t> frame(64 * 48 * 3, 9);
  std::vector<int16_t> pcm(960 * 2, 3), pcm_out(960 * 2);
  InputRead out[3];
  auto one_frame = [&](int i) {
    ring.write(frame.data(), 64, 48, FrameStrides{64 * 3, 3, 1}, -1, -1);
    ring.write(frame.data(), 64, 48, FrameStrides{64 * 3, 3, 1}, -1, -1);
    if (ring.read(out, 3, i % 2 == 0, 0) < 1) std::abort();
    ring.release_held();
    audio.write(pcm.data(), 960, -1);
    if (audio.read(pcm_out.data(), 960, 960, 0).first != 960) std::abort();
  };
  for (int i = 0; i < kWarmUp; ++i) one_frame(i);
  const long before = allocations.load();
  for (int i = 0; i < 1000; ++i) one_frame(i);
  EXPECT_EQ(allocations.load() - before, 0);
}

TEST(SteadyState, TheCounterSeesAllocations) {
  const long before = allocations.load();
  auto* probe = new std::vector<int>(16);
  delete probe;
  EXPECT_GE(allocations.load() - before, 2);  // the vector and its buffer: the tests above can fail
}
