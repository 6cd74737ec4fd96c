// Encoder fault injection (inject_error_for_tests): the injected failure takes the codec-failure path.
#include <gtest/gtest.h>

#include <vector>

#include "core/Encoder.h"
#include "core/Error.h"

using namespace reactor;

namespace {

void write_value(FrameRing& ring, uint8_t value, int64_t w = 8, int64_t h = 4) {
  std::vector<uint8_t> frame(static_cast<size_t>(w * h * 3), value);
  ring.write(frame.data(), w, h, FrameStrides{w * 3, 3, 1}, -1, -1, 1'000'000'000);
}

}  // namespace

TEST(EncoderFaults, AnInjectedErrorFailsOneFrameIsCountedAndRaisedOnce) {
  auto ring = std::make_shared<FrameRing>(4, 8, 4, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw, 90, Subsampling::S420}, 4);
  write_value(*ring, 1);
  encoder.flush(5'000'000'000);
  encoder.inject_error_for_tests(CodecKind::Raw);
  write_value(*ring, 2);
  EXPECT_THROW(encoder.flush(5'000'000'000), EncodeError);
  EXPECT_NO_THROW(encoder.check());  // raised once, then cleared
  write_value(*ring, 3);             // the next frame encodes again
  encoder.flush(5'000'000'000);
  EXPECT_EQ(ring->stats().counters.encode_errors.load(), 1u);
  EXPECT_EQ(ring->stats().counters.frames_encoded.load(), 2u);
  for (uint8_t value : {1, 3}) {
    PacketRef packet(encoder.queue(), encoder.queue()->pop(1'000'000'000));
    EXPECT_EQ(packet.data()[0], value);
  }
}

TEST(EncoderFaults, AnErrorInjectedIntoAnExtraOutputLeavesThePrimaryAlone) {
  auto ring = std::make_shared<FrameRing>(4, 8, 4, RingPolicy::Block);
  Encoder encoder(ring, CodecOptions{CodecKind::Raw, 90, Subsampling::S420}, 4, {CodecKind::I420});
  encoder.set_output_enabled(CodecKind::I420, true);
  encoder.inject_error_for_tests(CodecKind::I420);
  write_value(*ring, 5);
  EXPECT_THROW(encoder.flush(5'000'000'000), EncodeError);
  EXPECT_EQ(encoder.output_counters(CodecKind::Raw).frames_encoded.load(), 1u);
  EXPECT_EQ(encoder.output_counters(CodecKind::I420).frames_encoded.load(), 0u);
  EXPECT_THROW(encoder.inject_error_for_tests(CodecKind::Jpeg), InvalidArgument);  // no such output
}
