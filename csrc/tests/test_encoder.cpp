// Encoder: start/stop, output, close while blocked, and the error stash.
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>

#include "core/Encoder.h"
#include "core/Error.h"

using namespace reactor;

namespace {

// A codec that fails on chosen frames: for the error path.
class FailingCodec final : public FrameCodec {
 public:
  explicit FailingCodec(int64_t fail_index) : fail_index_(fail_index) {}
  CodecKind kind() const override { return CodecKind::Raw; }
  size_t max_bytes(int64_t w, int64_t h) const override { return static_cast<size_t>(w * h * 3); }
  EncodedFrame encode(const uint8_t* rgb, int64_t w, int64_t h, const FrameControl&, uint8_t* dst, size_t) override {
    if (rgb[0] == fail_index_) throw EncodeError("injected failure");
    std::memcpy(dst, rgb, static_cast<size_t>(w * h * 3));
    return {static_cast<size_t>(w * h * 3), true};
  }

 private:
  int64_t fail_index_;
};

void write_value(FrameRing& ring, uint8_t value, int64_t w = 8, int64_t h = 4) {
  std::vector<uint8_t> frame(static_cast<size_t>(w * h * 3), value);
  ring.write(frame.data(), w, h, FrameStrides{w * 3, 3, 1}, -1, -1, 1'000'000'000);
}

}  // namespace

TEST(Encoder, StartsAndStopsRepeatedly) {
  auto ring = std::make_shared<FrameRing>(4, 16, 16, RingPolicy::Block);
  for (int i = 0; i < 20; ++i) {
    Encoder encoder(ring, CodecOptions{CodecKind::Jpeg, 80, Subsampling::S420}, 4);
    EXPECT_TRUE(encoder.running());
    encoder.close();
    EXPECT_FALSE(encoder.running());
  }
}

TEST(Encoder, RawPacketsEqualTheFramesInOrder) {
  auto ring = std::make_shared<FrameRing>(4, 8, 4, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw, 90, Subsampling::S420}, 4);
  for (int i = 0; i < 3; ++i) write_value(*ring, static_cast<uint8_t>(10 + i));
  encoder.flush(5'000'000'000);
  for (int i = 0; i < 3; ++i) {
    PacketRef packet(encoder.queue(), encoder.queue()->pop(1'000'000'000));
    EXPECT_EQ(packet.meta().frame_index, i);
    EXPECT_EQ(packet.meta().size, 8u * 4 * 3);
    EXPECT_EQ(packet.data()[0], 10 + i);
    EXPECT_LE(packet.meta().t_commit_ns, packet.meta().t_encode_start_ns);
    EXPECT_LE(packet.meta().t_encode_start_ns, packet.meta().t_encode_end_ns);
  }
  EXPECT_EQ(ring->stats().counters.frames_encoded.load(), 3u);
}

TEST(Encoder, JpegAndI420ProducePackets) {
  for (CodecKind kind : {CodecKind::Jpeg, CodecKind::I420}) {
    auto ring = std::make_shared<FrameRing>(2, 34, 18, RingPolicy::Block);
    Encoder encoder(ring, CodecOptions{kind, 85, Subsampling::S444}, 2);
    write_value(*ring, 77, 34, 18);
    PacketRef packet(encoder.queue(), encoder.queue()->pop(5'000'000'000));
    EXPECT_EQ(packet.meta().codec, kind);
    if (kind == CodecKind::Jpeg) {
      EXPECT_EQ(packet.data()[0], 0xFF);
      EXPECT_EQ(packet.data()[1], 0xD8);  // SOI marker
    } else {
      EXPECT_EQ(packet.meta().size, 34u * 18 * 3 / 2);
    }
  }
}

TEST(Encoder, CloseDoesNotHangWhenNobodyPops) {
  auto ring = std::make_shared<FrameRing>(3, 8, 4, RingPolicy::DropOldest);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw, 90, Subsampling::S420}, 1);
  for (int i = 0; i < 10; ++i) write_value(*ring, static_cast<uint8_t>(i));
  // The single packet buffer is full and never popped: the thread waits for the pool.
  EXPECT_THROW(encoder.flush(50'000'000), Timeout);
  encoder.close();
  EXPECT_FALSE(encoder.running());
}

TEST(Encoder, StashesAnErrorAndRaisesItOnceAtTheNextCall) {
  auto ring = std::make_shared<FrameRing>(4, 8, 4, RingPolicy::Block);
  Encoder encoder(ring, std::make_unique<FailingCodec>(2), 4);
  // Each write waits for the encoder, so the failure is raised by the call after it, not by a later write.
  for (int i = 0; i < 2; ++i) write_value(*ring, static_cast<uint8_t>(i));
  ASSERT_TRUE(ring->wait_idle(5'000'000'000));
  write_value(*ring, 2);  // fails on the encoder thread
  EXPECT_THROW(encoder.flush(5'000'000'000), EncodeError);
  EXPECT_EQ(ring->stats().counters.encode_errors.load(), 1u);
  EXPECT_EQ(ring->stats().counters.frames_encoded.load(), 2u);
  EXPECT_NO_THROW(encoder.check());  // raised once, then cleared
  write_value(*ring, 3);
  ASSERT_TRUE(ring->wait_idle(5'000'000'000));
  EXPECT_NO_THROW(encoder.check());
  EXPECT_EQ(ring->stats().counters.frames_encoded.load(), 3u);
  write_value(*ring, 2);  // fails again on the encoder thread; the consumer's next call raises it
  ASSERT_TRUE(ring->wait_idle(5'000'000'000));
  EXPECT_THROW(encoder.queue()->try_pop(), EncodeError);
  EXPECT_EQ(ring->stats().counters.encode_errors.load(), 2u);
}
