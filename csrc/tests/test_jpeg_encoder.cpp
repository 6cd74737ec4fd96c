// JpegEncoder: TurboJPEG's bytes for every subsampling, quality band and size; full buffers; no growth.
#include <gtest/gtest.h>
#include <turbojpeg.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/Error.h"
#include "core/JpegEncoder.h"
#include "input_helpers.h"

using namespace reactor;

namespace {

using reactor::testing::textured;

int tj_samp(Subsampling s) {
  switch (s) {
    case Subsampling::S444: return TJSAMP_444;
    case Subsampling::S422: return TJSAMP_422;
    case Subsampling::S420: return TJSAMP_420;
    case Subsampling::Gray: return TJSAMP_GRAY;
  }
  return -1;
}

std::vector<uint8_t> turbojpeg(const std::vector<uint8_t>& rgb, int w, int h, Subsampling s, int quality) {
  UniqueTjHandle tj = make_tj_compressor();
  std::vector<uint8_t> out(tjBufSize(w, h, tj_samp(s)));
  unsigned char* dst = out.data();
  unsigned long size = out.size();  // NOLINT(runtime/int): TurboJPEG's own type
  if (tjCompress2(tj.get(), rgb.data(), w, 0, h, TJPF_RGB, &dst, &size, tj_samp(s), quality, TJFLAG_NOREALLOC) != 0) {
    ADD_FAILURE() << "tjCompress2: " << tjGetErrorStr2(tj.get());
  }
  out.resize(size);
  return out;
}

std::vector<uint8_t> ours(JpegEncoder& encoder, const std::vector<uint8_t>& rgb, int w, int h) {
  std::vector<uint8_t> out(encoder.max_bytes(w, h));
  out.resize(encoder.encode(rgb.data(), w, h, out.data(), out.size()));
  return out;
}

struct Size {
  int w, h;
};

}  // namespace

TEST(JpegEncoder, BytesEqualTurboJpegForEverySubsamplingQualityAndSize) {
  // 1x1 and odd sizes exercise the edge padding; 200x150 is larger than reserved (the memory grows).
  const Size sizes[] = {{96, 80}, {1, 1}, {7, 5}, {16, 16}, {17, 33}, {64, 48}, {95, 79}, {200, 150}, {33, 9}};
  int compared = 0;
  for (Subsampling s : {Subsampling::S444, Subsampling::S422, Subsampling::S420, Subsampling::Gray}) {
    // Below 96 TurboJPEG takes the fast DCT, from 96 the accurate one: both bands, and the extremes.
    for (int quality : {1, 50, 90, 96, 100}) {
      JpegEncoder encoder(quality, s);
      encoder.reserve(96, 80);
      int seed = 0;
      for (const Size& size : sizes) {
        const auto rgb = textured(size.w, size.h, ++seed);
        const auto expected = turbojpeg(rgb, size.w, size.h, s, quality);
        ASSERT_EQ(ours(encoder, rgb, size.w, size.h), expected)
            << subsampling_name(s) << " quality " << quality << " " << size.w << "x" << size.h;
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 4 * 5 * 9);
}

TEST(JpegEncoder, AFullPacketBufferIsAnEncodeErrorAndTheNextFrameStillEncodes) {
  JpegEncoder encoder(90, Subsampling::S420);
  encoder.reserve(64, 48);
  const auto rgb = textured(64, 48, 3);
  for (size_t capacity : {size_t{0}, size_t{100}, size_t{700}}) {  // in the headers, and in the scan data
    std::vector<uint8_t> small(capacity + 1, 0xA5);
    try {
      encoder.encode(rgb.data(), 64, 48, small.data(), capacity);
      FAIL() << "a " << capacity << "-byte buffer took a whole 64x48 JPEG";
    } catch (const EncodeError& e) {
      EXPECT_NE(std::string(e.what()).find("does not fit in the packet buffer of " + std::to_string(capacity)),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(small.back(), 0xA5) << "a byte was stored past the capacity of " << capacity;
  }
  // A buffer of exactly the JPEG's size holds it; one byte less does not.
  const auto expected = turbojpeg(rgb, 64, 48, Subsampling::S420, 90);
  std::vector<uint8_t> exact(expected.size() + 1, 0xA5);
  EXPECT_EQ(encoder.encode(rgb.data(), 64, 48, exact.data(), expected.size()), expected.size());
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), exact.begin()));
  EXPECT_EQ(exact.back(), 0xA5);  // nothing past the capacity
  EXPECT_THROW(encoder.encode(rgb.data(), 64, 48, exact.data(), expected.size() - 1), EncodeError);
  EXPECT_EQ(ours(encoder, rgb, 64, 48), expected);
}

TEST(JpegEncoder, AfterReserveNoFrameUpToTheMaximumTakesMemory) {
  JpegEncoder encoder(85, Subsampling::S420);
  encoder.reserve(320, 240);
  const int64_t reserved = encoder.blocks_allocated();
  EXPECT_GT(reserved, 0);
  for (const Size& size : {Size{320, 240}, Size{1, 1}, Size{319, 239}, Size{160, 240}, Size{320, 8}}) {
    const auto rgb = textured(size.w, size.h, size.w);
    ours(encoder, rgb, size.w, size.h);
    EXPECT_EQ(encoder.blocks_allocated(), reserved) << size.w << "x" << size.h;
  }
  // A larger frame grows the memory once, after which it is the new steady state.
  const auto large = textured(640, 480, 1);
  ours(encoder, large, 640, 480);
  const int64_t grown = encoder.blocks_allocated();
  EXPECT_GT(grown, reserved);
  ours(encoder, large, 640, 480);
  ours(encoder, textured(320, 240, 2), 320, 240);
  EXPECT_EQ(encoder.blocks_allocated(), grown);
}

TEST(JpegEncoder, BadQualityAndSizesAreErrorsThatNameTheRange) {
  EXPECT_THROW(JpegEncoder(0, Subsampling::S420), InvalidArgument);
  EXPECT_THROW(JpegEncoder(101, Subsampling::S420), InvalidArgument);
  JpegEncoder encoder(90, Subsampling::S444);
  std::vector<uint8_t> out(1024), rgb(3);
  try {
    encoder.encode(rgb.data(), 0, 1, out.data(), out.size());
    FAIL() << "a 0x1 frame encoded";
  } catch (const EncodeError& e) {
    EXPECT_NE(std::string(e.what()).find("1 to 65500 pixels on a side, got 0x1"), std::string::npos) << e.what();
  }
}
