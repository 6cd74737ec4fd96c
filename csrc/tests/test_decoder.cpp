// Decoder: VP8 and JPEG round trips, corrupt payloads, key frame recovery, size changes and refusals,
// the packet queue's drop-oldest, reset and close.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/Decoder.h"
#include "core/Error.h"
#include "input_helpers.h"

using namespace reactor;
using namespace reactor::testing;

namespace {

constexpr int64_t kW = 64, kH = 48;

struct Rig {
  std::shared_ptr<InputRing> ring;
  Decoder decoder;
  Rig(InputCodec codec, int64_t max_w = kW, int64_t max_h = kH, int64_t queue = 8)
      : ring(std::make_shared<InputRing>(4, max_w, max_h)), decoder(ring, codec, queue, 1 << 20) {}

  void submit(const Encoded& e) { decoder.submit(e.bytes.data(), e.bytes.size()); }
  void submit_bytes(const std::vector<uint8_t>& bytes) { decoder.submit(bytes.data(), bytes.size()); }
  void settle() { ASSERT_TRUE(decoder.wait_idle(10 * kSecond)); }
  // The newest decoded frame, released at the next call.
  bool latest(InputRead* out) {
    ring->release_held();
    return ring->read(out, 1, true, 0) == 1;
  }
  const DecoderCounters& counters() const { return decoder.counters(); }
};

// Submits one packet, waits for it, and checks the newest frame looks like its source.
void expect_decodes(Rig& rig, const Encoded& e, int64_t w, int64_t h) {
  const uint64_t before = rig.counters().frames_decoded.load();
  rig.submit(e);
  rig.settle();
  ASSERT_EQ(rig.counters().frames_decoded.load(), before + 1) << rig.decoder.last_error();
  InputRead out;
  ASSERT_TRUE(rig.latest(&out));
  ASSERT_EQ(out.meta.width, w);
  ASSERT_EQ(out.meta.height, h);
  EXPECT_LT(mean_abs_error(out.data, e.source.data(), e.source.size()), 8.0);
}

}  // namespace

TEST(Decoder, Vp8RoundTripKeepsOrderTimesAndContent) {
  Rig rig(InputCodec::Vp8);
  const auto stream = vp8_stream(kW, kH, 12);
  EXPECT_TRUE(stream[0].keyframe);
  EXPECT_FALSE(stream[1].keyframe);
  for (size_t i = 0; i < stream.size(); ++i) {
    rig.decoder.submit(stream[i].bytes.data(), stream[i].bytes.size(), 1000 + static_cast<int64_t>(i), 5000);
    rig.settle();
    InputRead out;
    ASSERT_TRUE(rig.latest(&out)) << "frame " << i;
    EXPECT_EQ(out.meta.index, static_cast<int64_t>(i));
    EXPECT_EQ(out.meta.capture_ns, 1000 + static_cast<int64_t>(i));
    EXPECT_EQ(out.meta.arrival_ns, 5000);
    EXPECT_EQ(out.meta.keyframe, i == 0);
    EXPECT_LT(mean_abs_error(out.data, stream[i].source.data(), stream[i].source.size()), 8.0) << "frame " << i;
  }
  EXPECT_EQ(rig.counters().frames_decoded.load(), 12u);
  EXPECT_EQ(rig.counters().decode_errors.load(), 0u);
  EXPECT_FALSE(rig.decoder.need_keyframe());
  EXPECT_EQ(rig.decoder.last_error(), "");
  EXPECT_EQ(rig.decoder.histogram(DecoderLatency::Decode).snapshot().count, 12u);
}

TEST(Decoder, JpegRoundTrip) {
  Rig rig(InputCodec::Jpeg);
  for (int i = 0; i < 3; ++i) expect_decodes(rig, jpeg_frame(kW, kH, i), kW, kH);
  EXPECT_EQ(rig.counters().resolution_changes.load(), 0u);
}

TEST(Decoder, CorruptVp8IsCountedThenDeltasWaitForTheNextKeyFrame) {
  Rig rig(InputCodec::Vp8);
  const auto stream = vp8_stream(kW, kH, 10, {6});
  for (int i = 0; i < 3; ++i) expect_decodes(rig, stream[i], kW, kH);
  // A key frame cut short: libvpx refuses it.
  std::vector<uint8_t> truncated(stream[0].bytes.begin(), stream[0].bytes.begin() + 20);
  rig.submit_bytes(truncated);
  // A key frame tag with no start code, and a packet too short for a tag.
  std::vector<uint8_t> no_start_code = stream[0].bytes;
  no_start_code[4] ^= 0xFF;
  rig.submit_bytes(no_start_code);
  rig.submit_bytes({0x01, 0x02});
  rig.settle();
  EXPECT_EQ(rig.counters().decode_errors.load(), 3u);
  EXPECT_TRUE(rig.decoder.need_keyframe());
  EXPECT_EQ(rig.counters().keyframe_requests.load(), 1u);  // false -> true once, however many errors
  EXPECT_NE(rig.decoder.last_error().find("VP8"), std::string::npos) << rig.decoder.last_error();
  // Deltas 3..5 reference what came before: discarded, not decoded into garbage.
  for (int i = 3; i < 6; ++i) rig.submit(stream[i]);
  rig.settle();
  EXPECT_EQ(rig.counters().frames_discarded.load(), 3u);
  EXPECT_EQ(rig.counters().frames_decoded.load(), 3u);
  // The key frame decodes, and the deltas after it.
  ASSERT_TRUE(stream[6].keyframe);
  expect_decodes(rig, stream[6], kW, kH);
  EXPECT_FALSE(rig.decoder.need_keyframe());
  expect_decodes(rig, stream[7], kW, kH);
}

TEST(Decoder, GarbageAfterAValidVp8HeaderIsCaught) {
  Rig rig(InputCodec::Vp8);
  const auto stream = vp8_stream(kW, kH, 4, {2});
  expect_decodes(rig, stream[0], kW, kH);
  // The key frame's header kept, its partition sizes and data scrambled.
  std::vector<uint8_t> scrambled = stream[2].bytes;
  for (size_t i = 10; i < scrambled.size(); ++i) scrambled[i] = static_cast<uint8_t>(i * 151 + 7);
  scrambled[0] = static_cast<uint8_t>((scrambled[0] & 0x1F) | 0xE0);  // a first partition longer than the packet
  scrambled[1] = scrambled[2] = 0xFF;
  rig.submit_bytes(scrambled);
  rig.settle();
  EXPECT_EQ(rig.counters().decode_errors.load(), 1u) << rig.decoder.last_error();
  EXPECT_TRUE(rig.decoder.need_keyframe());
  expect_decodes(rig, stream[2], kW, kH);
  expect_decodes(rig, stream[3], kW, kH);
}

TEST(Decoder, CorruptJpegIsCountedAndTheNextOneDecodes) {
  Rig rig(InputCodec::Jpeg);
  const Encoded good = jpeg_frame(kW, kH, 1);
  rig.submit_bytes({'n', 'o', 't', ' ', 'a', ' ', 'j', 'p', 'e', 'g'});
  std::vector<uint8_t> truncated(good.bytes.begin(),
                                 good.bytes.begin() + static_cast<std::ptrdiff_t>(good.bytes.size() / 2));
  rig.submit_bytes(truncated);
  rig.settle();
  EXPECT_EQ(rig.counters().decode_errors.load(), 2u);
  EXPECT_EQ(rig.counters().frames_decoded.load(), 0u);
  EXPECT_EQ(rig.ring->counters().frames_in.load(), 0u);  // the aborted slot never reached the reader
  EXPECT_NE(rig.decoder.last_error().find("JPEG"), std::string::npos);
  EXPECT_FALSE(rig.decoder.need_keyframe());
  expect_decodes(rig, good, kW, kH);
}

TEST(Decoder, ResolutionChangesMidStream) {
  Rig rig(InputCodec::Vp8);
  const auto big = vp8_stream(kW, kH, 3);
  const auto small = vp8_stream(32, 24, 3);
  for (const auto& e : big) expect_decodes(rig, e, kW, kH);
  for (const auto& e : small) expect_decodes(rig, e, 32, 24);
  for (const auto& e : big) expect_decodes(rig, e, kW, kH);
  EXPECT_EQ(rig.counters().resolution_changes.load(), 2u);
  EXPECT_EQ(rig.counters().decode_errors.load(), 0u);

  Rig jpeg(InputCodec::Jpeg);
  expect_decodes(jpeg, jpeg_frame(kW, kH, 0), kW, kH);
  expect_decodes(jpeg, jpeg_frame(40, 30, 1), 40, 30);
  EXPECT_EQ(jpeg.counters().resolution_changes.load(), 1u);
}

TEST(Decoder, AFrameLargerThanTheSlotsIsRefusedAndTheStreamWaitsForOneThatFits) {
  Rig rig(InputCodec::Vp8, 32, 24);
  const auto big = vp8_stream(kW, kH, 3);
  for (const auto& e : big) rig.submit(e);
  rig.settle();
  EXPECT_EQ(rig.counters().frames_refused.load(), 1u);
  EXPECT_EQ(rig.counters().frames_discarded.load(), 2u);
  EXPECT_EQ(rig.ring->counters().frames_refused.load(), 1u);
  EXPECT_TRUE(rig.decoder.need_keyframe());
  const std::string error = rig.decoder.last_error();
  EXPECT_NE(error.find("64x48"), std::string::npos) << error;
  EXPECT_NE(error.find("32x24"), std::string::npos) << error;
  const auto fits = vp8_stream(32, 24, 2);
  expect_decodes(rig, fits[0], 32, 24);
  expect_decodes(rig, fits[1], 32, 24);
  EXPECT_FALSE(rig.decoder.need_keyframe());

  Rig jpeg(InputCodec::Jpeg, 32, 24);
  jpeg.submit(jpeg_frame(kW, kH, 0));
  jpeg.settle();
  EXPECT_EQ(jpeg.counters().frames_refused.load(), 1u);
  expect_decodes(jpeg, jpeg_frame(32, 24, 0), 32, 24);
}

TEST(Decoder, APacketLargerThanMaxPacketBytesOrEmptyIsRefused) {
  auto ring = std::make_shared<InputRing>(2, kW, kH);
  Decoder decoder(ring, InputCodec::Jpeg, 2, 100);
  std::vector<uint8_t> bytes(101, 0);
  try {
    decoder.submit(bytes.data(), bytes.size());
    FAIL() << "no FrameError";
  } catch (const FrameError& e) {
    EXPECT_NE(std::string(e.what()).find("101 bytes"), std::string::npos) << e.what();
  }
  EXPECT_THROW(decoder.submit(bytes.data(), 0), FrameError);
  EXPECT_EQ(decoder.counters().packets_refused.load(), 2u);
  EXPECT_EQ(decoder.counters().packets_in.load(), 0u);
}

TEST(Decoder, AFullQueueDropsTheOldestAndTheStreamRecoversAtAKeyFrame) {
  Rig rig(InputCodec::Vp8, kW, kH, 3);
  const auto stream = vp8_stream(kW, kH, 10, {8});
  expect_decodes(rig, stream[0], kW, kH);
  rig.decoder.hold_for_tests(true);  // a decoder that falls behind
  int dropped = 0;
  for (int i = 1; i < 6; ++i) {
    dropped += rig.decoder.submit(stream[i].bytes.data(), stream[i].bytes.size()) == SubmitResult::DroppedOldest;
  }
  EXPECT_EQ(dropped, 2);
  EXPECT_EQ(rig.counters().packets_dropped.load(), 2u);
  EXPECT_EQ(rig.decoder.queued(), 3);
  rig.decoder.hold_for_tests(false);
  rig.settle();
  // 1 and 2 were dropped: 3, 4, 5 cannot be decoded without them.
  EXPECT_EQ(rig.counters().frames_discarded.load(), 3u);
  EXPECT_TRUE(rig.decoder.need_keyframe());
  EXPECT_EQ(rig.counters().keyframe_requests.load(), 1u);
  rig.submit(stream[6]);
  rig.submit(stream[7]);
  rig.settle();
  EXPECT_EQ(rig.counters().frames_discarded.load(), 5u);
  expect_decodes(rig, stream[8], kW, kH);
  expect_decodes(rig, stream[9], kW, kH);
  EXPECT_FALSE(rig.decoder.need_keyframe());
}

TEST(Decoder, ResetDropsQueuedPacketsAndStartsANewStream) {
  Rig rig(InputCodec::Vp8);
  const auto stream = vp8_stream(kW, kH, 6);
  expect_decodes(rig, stream[0], kW, kH);
  rig.decoder.hold_for_tests(true);
  for (int i = 1; i < 4; ++i) rig.submit(stream[i]);
  rig.decoder.reset(5 * kSecond);  // served while held
  EXPECT_EQ(rig.decoder.queued(), 0);
  rig.decoder.hold_for_tests(false);
  rig.ring->reset();
  // A delta of the old stream has no reference in the new one.
  rig.submit(stream[4]);
  rig.settle();
  EXPECT_EQ(rig.counters().frames_discarded.load(), 1u);
  EXPECT_EQ(rig.counters().frames_decoded.load(), 1u);
  rig.decoder.reset(5 * kSecond);
  EXPECT_FALSE(rig.decoder.need_keyframe());
  EXPECT_EQ(rig.decoder.last_error(), "");
  const auto fresh = vp8_stream(kW, kH, 2, {}, 50);
  expect_decodes(rig, fresh[0], kW, kH);
  InputRead current;
  ASSERT_TRUE(rig.ring->current(&current));
  EXPECT_EQ(current.meta.index, 0);  // the ring's index restarted with the session
  EXPECT_EQ(rig.counters().resolution_changes.load(), 0u);
}

TEST(Decoder, CloseJoinsTheThreadWhileAReaderBlocksAndPacketsWait) {
  auto ring = std::make_shared<InputRing>(2, kW, kH);
  auto decoder = std::make_unique<Decoder>(ring, InputCodec::Vp8, 4, 1 << 20);
  std::atomic<int> got{-1};
  std::thread reader([&] {
    InputRead out;
    got = ring->read(&out, 1, true, -1);
  });
  const auto stream = vp8_stream(kW, kH, 3);
  decoder->hold_for_tests(true);
  for (const auto& e : stream) decoder->submit(e.bytes.data(), e.bytes.size());
  decoder->close();
  EXPECT_FALSE(decoder->running());
  EXPECT_THROW(decoder->submit(stream[0].bytes.data(), stream[0].bytes.size()), Closed);
  EXPECT_THROW(decoder->reset(kSecond), Closed);
  ring->close();
  reader.join();
  EXPECT_EQ(got.load(), 0);
  decoder.reset();  // destroying a closed decoder is fine
}

TEST(Decoder, SubmittersOnSeveralThreadsAreSafe) {
  Rig rig(InputCodec::Jpeg, kW, kH, 4);
  const Encoded frame = jpeg_frame(kW, kH, 2);
  auto submit_many = [&] {
    for (int i = 0; i < 40; ++i) rig.submit(frame);
  };
  std::thread a(submit_many), b(submit_many);
  std::thread reader([&] {
    InputRead out;
    for (int i = 0; i < 200; ++i) {
      rig.ring->read(&out, 1, true, 1'000'000);
      rig.ring->release_held();
    }
  });
  a.join();
  b.join();
  rig.settle();
  reader.join();
  const DecoderCounters& c = rig.counters();
  EXPECT_EQ(c.packets_in.load(), 80u);
  EXPECT_EQ(c.frames_decoded.load() + c.packets_dropped.load(), 80u);
  EXPECT_EQ(c.decode_errors.load(), 0u);
}

TEST(Decoder, UnknownCodecNamesAreRefused) {
  EXPECT_EQ(parse_input_codec("vp8"), InputCodec::Vp8);
  EXPECT_EQ(parse_input_codec("jpeg"), InputCodec::Jpeg);
  EXPECT_THROW(parse_input_codec("h264"), InvalidArgument);
}
