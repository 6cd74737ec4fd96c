// VP8 and several outputs per encoder: key frames, live bitrate, size changes, back-pressure, conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/Encoder.h"
#include "core/Error.h"
#include "core/Vp8Codec.h"

using namespace reactor;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kFrameNs = 33'333'333;

// A moving gradient with texture: something for VP8's inter prediction and rate control to work on.
void write_pattern(FrameRing& ring, int index, int64_t w = 64, int64_t h = 48) {
  std::vector<uint8_t> frame(static_cast<size_t>(w * h * 3));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* p = &frame[static_cast<size_t>((y * w + x) * 3)];
      p[0] = static_cast<uint8_t>(x * 4 + index * 3);
      p[1] = static_cast<uint8_t>(y * 5);
      p[2] = static_cast<uint8_t>(128 + 100 * std::sin(static_cast<double>(x * y + index * 7) / 9.0));
    }
  }
  ring.write(frame.data(), w, h, FrameStrides{w * 3, 3, 1}, -1, index * kFrameNs, kSecond);
}

CodecOptions vp8_options(int keyframe_interval = 0) {
  CodecOptions options;
  options.kind = CodecKind::Vp8;
  options.keyframe_interval = keyframe_interval;
  return options;
}

struct Popped {
  PacketMeta meta;
};

Popped pop(PacketQueue& queue) {
  const int index = queue.pop(5 * kSecond);
  EXPECT_GE(index, 0);
  Popped popped{queue.meta(index)};
  queue.release(index);
  return popped;
}

}  // namespace

TEST(Vp8, OnlyTheFirstPacketIsAKeyFrameWithoutAnInterval) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, vp8_options(), 4);
  EXPECT_EQ(encoder.codec(), CodecKind::Vp8);
  for (int i = 0; i < 6; ++i) {
    write_pattern(*ring, i);
    const Popped packet = pop(*encoder.queue());
    EXPECT_EQ(packet.meta.codec, CodecKind::Vp8);
    EXPECT_EQ(packet.meta.frame_index, i);
    EXPECT_GT(packet.meta.size, 0u);
    EXPECT_EQ(packet.meta.keyframe, i == 0) << "frame " << i;
  }
  EXPECT_EQ(encoder.output_counters(CodecKind::Vp8).keyframes.load(), 1u);
  EXPECT_EQ(encoder.output_counters(CodecKind::Vp8).frames_encoded.load(), 6u);
}

TEST(Vp8, KeyframeIntervalMakesPeriodicKeyFrames) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, vp8_options(4), 4);
  int keyframes = 0;
  for (int i = 0; i < 12; ++i) {
    write_pattern(*ring, i);
    keyframes += pop(*encoder.queue()).meta.keyframe ? 1 : 0;
  }
  EXPECT_GE(keyframes, 3);
}

TEST(Vp8, RequestKeyframeMakesTheNextPacketAKeyFrame) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, vp8_options(), 4);
  for (int i = 0; i < 3; ++i) {
    write_pattern(*ring, i);
    pop(*encoder.queue());
  }
  encoder.request_keyframe();
  write_pattern(*ring, 3);
  EXPECT_TRUE(pop(*encoder.queue()).meta.keyframe);
  write_pattern(*ring, 4);
  EXPECT_FALSE(pop(*encoder.queue()).meta.keyframe);
}

TEST(Vp8, LowerBitrateMakesSmallerPackets) {
  auto ring = std::make_shared<FrameRing>(4, 160, 120, RingPolicy::Block);
  CodecOptions options = vp8_options();
  options.bitrate_bps = 4'000'000;
  Encoder encoder(ring, options, 4);
  auto mean_size = [&](int first) {
    size_t total = 0;
    for (int i = first; i < first + 30; ++i) {
      write_pattern(*ring, i, 160, 120);
      const size_t size = pop(*encoder.queue()).meta.size;
      if (i >= first + 15) total += size;  // after rate control has settled
    }
    return static_cast<double>(total) / 15;
  };
  const double high = mean_size(0);
  encoder.set_bitrate(100'000);
  EXPECT_EQ(encoder.bitrate(), 100'000);
  const double low = mean_size(30);
  EXPECT_LT(low, high * 0.5) << "high " << high << " low " << low;
}

TEST(Vp8, BitrateOutsideTheRangeIsRejected) {
  auto ring = std::make_shared<FrameRing>(2, 16, 16, RingPolicy::Block);
  Encoder encoder(ring, vp8_options(), 2);
  EXPECT_THROW(encoder.set_bitrate(0), InvalidArgument);
  EXPECT_THROW(encoder.set_bitrate(kMaxBitrateBps + 1), InvalidArgument);
  EXPECT_EQ(encoder.bitrate(), CodecOptions{}.bitrate_bps);
  CodecOptions options = vp8_options();
  options.bitrate_bps = 5;
  EXPECT_THROW(Encoder(ring, options, 2), InvalidArgument);
}

TEST(Vp8, InvalidSettingsAreRejectedAtConstruction) {
  auto ring = std::make_shared<FrameRing>(2, 16, 16, RingPolicy::Block);
  CodecOptions speed = vp8_options();
  speed.vp8_speed = 17;
  EXPECT_THROW(Encoder(ring, speed, 2), InvalidArgument);
  CodecOptions threads = vp8_options();
  threads.vp8_threads = 0;
  EXPECT_THROW(Encoder(ring, threads, 2), InvalidArgument);
  CodecOptions interval = vp8_options(-1);
  EXPECT_THROW(Encoder(ring, interval, 2), InvalidArgument);
  auto huge = std::make_shared<FrameRing>(2, 16384, 2, RingPolicy::Block);
  EXPECT_THROW(Encoder(huge, vp8_options(), 1), InvalidArgument);
}

TEST(Vp8, AFrameOfANewSizeStartsANewStreamWithAKeyFrame) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, vp8_options(), 4);
  for (int i = 0; i < 3; ++i) {
    write_pattern(*ring, i);
    pop(*encoder.queue());
  }
  write_pattern(*ring, 3, 33, 17);  // odd sizes too
  const Popped resized = pop(*encoder.queue());
  EXPECT_TRUE(resized.meta.keyframe);
  EXPECT_EQ(resized.meta.width, 33);
  EXPECT_EQ(resized.meta.height, 17);
  write_pattern(*ring, 4, 33, 17);
  EXPECT_FALSE(pop(*encoder.queue()).meta.keyframe);
}

TEST(Vp8, ConversionIsBt601LimitedRange) {
  struct Case {
    uint8_t r, g, b;
    int y, u, v;
  };
  for (const Case& c : {Case{255, 255, 255, 235, 128, 128}, Case{0, 0, 0, 16, 128, 128}, Case{255, 0, 0, 81, 90, 240},
                        Case{0, 0, 255, 41, 240, 110}}) {
    std::vector<uint8_t> rgb(6 * 4 * 3);
    for (size_t i = 0; i < rgb.size(); i += 3) {
      rgb[i] = c.r;
      rgb[i + 1] = c.g;
      rgb[i + 2] = c.b;
    }
    UniqueVpxImage image = alloc_i420_image(6, 4);
    rgb_to_i420(rgb.data(), 6, 4, *image);
    EXPECT_NEAR(image->planes[VPX_PLANE_Y][image->stride[VPX_PLANE_Y] + 5], c.y, 1);
    EXPECT_NEAR(image->planes[VPX_PLANE_U][image->stride[VPX_PLANE_U] + 2], c.u, 1);
    EXPECT_NEAR(image->planes[VPX_PLANE_V][0], c.v, 1);
  }
}

TEST(Outputs, ExtraOutputsStartDisabledAndCostNoEncode) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Jpeg, 80, Subsampling::S420}, 4, {CodecKind::Vp8, CodecKind::Raw});
  ASSERT_EQ(encoder.codecs(), (std::vector<CodecKind>{CodecKind::Jpeg, CodecKind::Vp8, CodecKind::Raw}));
  EXPECT_TRUE(encoder.output_enabled(CodecKind::Jpeg));
  EXPECT_FALSE(encoder.output_enabled(CodecKind::Vp8));
  for (int i = 0; i < 3; ++i) {
    write_pattern(*ring, i);
    EXPECT_EQ(pop(*encoder.queue()).meta.codec, CodecKind::Jpeg);
  }
  EXPECT_EQ(encoder.output_counters(CodecKind::Vp8).frames_encoded.load(), 0u);
  EXPECT_EQ(encoder.output_counters(CodecKind::Raw).frames_encoded.load(), 0u);
  EXPECT_EQ(encoder.queue_for(CodecKind::Vp8)->size(), 0);

  // The thread publishes frame 2's JPEG before it is done with the frame: enabling VP8 before it
  // releases the slot would (rightly) give frame 2 a VP8 packet too.
  ASSERT_TRUE(ring->wait_idle(2'000'000'000));
  encoder.set_output_enabled(CodecKind::Vp8, true);
  for (int i = 3; i < 6; ++i) {
    write_pattern(*ring, i);
    pop(*encoder.queue());
    const Popped vp8 = pop(*encoder.queue_for(CodecKind::Vp8));
    EXPECT_EQ(vp8.meta.codec, CodecKind::Vp8);
    EXPECT_EQ(vp8.meta.frame_index, i);
    EXPECT_EQ(vp8.meta.keyframe, i == 3);
  }
  EXPECT_EQ(encoder.output_counters(CodecKind::Jpeg).frames_encoded.load(), 6u);
  EXPECT_EQ(encoder.output_counters(CodecKind::Vp8).frames_encoded.load(), 3u);
  EXPECT_EQ(ring->stats().counters.frames_encoded.load(), 6u);  // frames, not packets
  EXPECT_THROW(encoder.queue_for(CodecKind::I420), InvalidArgument);
}

TEST(Outputs, EnablingAnOutputAgainStartsItWithAKeyFrame) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw}, 4, {CodecKind::Vp8});
  encoder.set_output_enabled(CodecKind::Vp8, true);
  for (int i = 0; i < 3; ++i) {
    write_pattern(*ring, i);
    pop(*encoder.queue());
    pop(*encoder.queue_for(CodecKind::Vp8));
  }
  encoder.set_output_enabled(CodecKind::Vp8, false);
  write_pattern(*ring, 3);
  pop(*encoder.queue());
  encoder.set_output_enabled(CodecKind::Vp8, true);
  write_pattern(*ring, 4);
  pop(*encoder.queue());
  EXPECT_TRUE(pop(*encoder.queue_for(CodecKind::Vp8)).meta.keyframe);
}

TEST(Outputs, AFullExtraOutputDropsWithoutHoldingUpThePrimary) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw}, 2, {CodecKind::Vp8});
  encoder.set_output_enabled(CodecKind::Vp8, true);
  for (int i = 0; i < 6; ++i) {  // nobody pops the VP8 output
    write_pattern(*ring, i);
    EXPECT_EQ(pop(*encoder.queue()).meta.frame_index, i);
  }
  encoder.flush(5 * kSecond);  // the last frame's VP8 output runs after its primary packet is out
  EXPECT_EQ(encoder.output_counters(CodecKind::Vp8).frames_encoded.load(), 2u);
  EXPECT_EQ(encoder.output_counters(CodecKind::Vp8).frames_dropped.load(), 4u);
  EXPECT_EQ(encoder.output_counters(CodecKind::Raw).frames_dropped.load(), 0u);
}

TEST(Outputs, DisablingAFullPrimaryLetsTheOtherOutputsGoOn) {
  auto ring = std::make_shared<FrameRing>(4, 64, 48, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw}, 2, {CodecKind::Jpeg});
  encoder.set_output_enabled(CodecKind::Jpeg, true);
  for (int i = 0; i < 2; ++i) write_pattern(*ring, i);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(pop(*encoder.queue_for(CodecKind::Jpeg)).meta.frame_index, i);
  // The primary's two buffers are full and nobody pops them: the thread waits, frames stay in the ring.
  for (int i = 2; i < 4; ++i) write_pattern(*ring, i);
  EXPECT_THROW(encoder.flush(50'000'000), Timeout);
  encoder.set_output_enabled(CodecKind::Raw, false);
  for (int i = 2; i < 4; ++i) EXPECT_EQ(pop(*encoder.queue_for(CodecKind::Jpeg)).meta.frame_index, i);
  encoder.flush(5 * kSecond);
  EXPECT_EQ(encoder.output_counters(CodecKind::Raw).frames_encoded.load(), 2u);
  EXPECT_EQ(encoder.output_counters(CodecKind::Jpeg).frames_dropped.load(), 0u);
}

TEST(Outputs, ACodecGivenTwiceIsRejected) {
  auto ring = std::make_shared<FrameRing>(2, 16, 16, RingPolicy::Block);
  EXPECT_THROW(Encoder(ring, CodecOptions{CodecKind::Jpeg}, 2, {CodecKind::Jpeg}), InvalidArgument);
  EXPECT_THROW(Encoder(ring, CodecOptions{CodecKind::Jpeg}, 2, {CodecKind::Vp8, CodecKind::Vp8}), InvalidArgument);
}
