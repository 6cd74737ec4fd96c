// StripedJpegEncoder: byte-equal to one encoder with the same restart interval; decodes as the
// unstriped JPEG does; whole frames where no split pays; errors; many frames and sizes in a row.
#include <gtest/gtest.h>
#include <turbojpeg.h>

#include <string>
#include <vector>

#include "core/Error.h"
#include "core/JpegEncoder.h"
#include "core/JpegStripes.h"
#include "input_helpers.h"

using namespace reactor;

namespace {

using reactor::testing::textured;

std::vector<uint8_t> striped(StripedJpegEncoder& encoder, const std::vector<uint8_t>& rgb, int64_t w, int64_t h) {
  std::vector<uint8_t> out(encoder.max_bytes(w, h));
  out.resize(encoder.encode(rgb.data(), w, h, out.data(), out.size()));
  return out;
}

std::vector<uint8_t> single(JpegEncoder& encoder, const std::vector<uint8_t>& rgb, int64_t w, int64_t h,
                            int64_t restart_mcus) {
  std::vector<uint8_t> out(encoder.max_bytes(w, h));
  out.resize(encoder.encode(rgb.data(), w, h, out.data(), out.size(), restart_mcus));
  return out;
}

std::vector<uint8_t> decode(const std::vector<uint8_t>& jpeg, int w, int h) {
  tjhandle tj = tjInitDecompress();
  std::vector<uint8_t> rgb(static_cast<size_t>(w * h * 3));
  const int rc = tjDecompress2(tj, jpeg.data(), jpeg.size(), rgb.data(), w, 0, h, TJPF_RGB, 0);
  if (rc != 0) ADD_FAILURE() << "tjDecompress2: " << tjGetErrorStr2(tj);
  tjDestroy(tj);
  return rgb;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Size {
  int w, h;
};

}  // namespace

TEST(JpegStripes, BytesEqualOneEncoderWithTheSameRestartInterval) {
  // Odd sizes: a last stripe shorter than the others and bottom and right edges padded by libjpeg.
  const Size sizes[] = {{640, 480}, {1023, 577}, {1280, 720}, {701, 419}, {512, 1031}};
  int split = 0;
  for (Subsampling s : {Subsampling::S444, Subsampling::S422, Subsampling::S420, Subsampling::Gray}) {
    for (int quality : {50, 90, 100}) {
      for (int threads : {2, 3, 4}) {
        StripedJpegEncoder encoder(quality, s, threads);
        encoder.reserve(1280, 1031);
        JpegEncoder reference(quality, s);
        int seed = 0;
        for (const Size& size : sizes) {
          const auto rgb = textured(size.w, size.h, ++seed);
          const int stripes = encoder.stripes_for(size.w, size.h);
          ASSERT_GE(stripes, 2) << size.w << "x" << size.h;
          ASSERT_LE(stripes, threads);
          const int64_t restart = encoder.stripe_mcu_rows(size.w, size.h) * ceil_div(size.w, reference.mcu_width());
          ASSERT_EQ(striped(encoder, rgb, size.w, size.h), single(reference, rgb, size.w, size.h, restart))
              << subsampling_name(s) << " quality " << quality << " threads " << threads << " " << size.w << "x"
              << size.h;
          ++split;
        }
      }
    }
  }
  EXPECT_EQ(split, 4 * 3 * 3 * 5);
}

TEST(JpegStripes, DecodesToThePixelsOfTheUnstripedJpeg) {
  StripedJpegEncoder encoder(85, Subsampling::S420, 4);
  encoder.reserve(1280, 720);
  JpegEncoder whole(85, Subsampling::S420);
  const auto rgb = textured(1280, 720, 7);
  const auto jpeg = striped(encoder, rgb, 1280, 720);
  EXPECT_EQ(encoder.stripes_for(1280, 720), 4);
  EXPECT_EQ(decode(jpeg, 1280, 720), decode(single(whole, rgb, 1280, 720, 0), 1280, 720));
}

TEST(JpegStripes, FramesTooSmallToSplitAreTurboJpegBytes) {
  StripedJpegEncoder encoder(85, Subsampling::S420, 4);
  encoder.reserve(1280, 720);
  JpegEncoder whole(85, Subsampling::S420);
  for (const Size& size : {Size{256, 256}, Size{64, 48}, Size{1280, 16}}) {
    const auto rgb = textured(size.w, size.h, size.w);
    EXPECT_EQ(encoder.stripes_for(size.w, size.h), 1) << size.w << "x" << size.h;
    EXPECT_EQ(striped(encoder, rgb, size.w, size.h), single(whole, rgb, size.w, size.h, 0));
  }
  // One thread, or a frame larger than reserved: whole too.
  StripedJpegEncoder one(85, Subsampling::S420, 1);
  one.reserve(1280, 720);
  EXPECT_EQ(one.stripes_for(1280, 720), 1);
  EXPECT_EQ(encoder.stripes_for(1281, 720), 1);
  const auto big = textured(1300, 720, 3);
  EXPECT_EQ(striped(encoder, big, 1300, 720), single(whole, big, 1300, 720, 0));
}

TEST(JpegStripes, ManyFramesOfChangingSizesReuseTheMemory) {
  StripedJpegEncoder encoder(85, Subsampling::S420, 3);
  encoder.reserve(1280, 720);
  JpegEncoder reference(85, Subsampling::S420);
  const int64_t blocks = encoder.blocks_allocated();
  const Size sizes[] = {{1280, 720}, {640, 360}, {1280, 360}, {800, 600}, {256, 256}};
  for (int i = 0; i < 60; ++i) {
    const Size& size = sizes[i % 5];
    const auto rgb = textured(size.w, size.h, i);
    const int64_t restart = encoder.stripes_for(size.w, size.h) == 1
                                ? 0
                                : encoder.stripe_mcu_rows(size.w, size.h) * ceil_div(size.w, reference.mcu_width());
    ASSERT_EQ(striped(encoder, rgb, size.w, size.h), single(reference, rgb, size.w, size.h, restart)) << i;
  }
  EXPECT_EQ(encoder.blocks_allocated(), blocks);
}

TEST(JpegStripes, AFullBufferIsAnErrorAndTheEncoderGoesOn) {
  StripedJpegEncoder encoder(85, Subsampling::S420, 2);
  encoder.reserve(1280, 720);
  const auto rgb = textured(1280, 720, 1);
  std::vector<uint8_t> small(20000);
  try {
    encoder.encode(rgb.data(), 1280, 720, small.data(), small.size());
    ADD_FAILURE() << "no EncodeError";
  } catch (const EncodeError& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit in the packet buffer of 20000 bytes"), std::string::npos)
        << e.what();
  }
  // The first stripe fits but the whole does not: the join's own check.
  std::vector<uint8_t> half(static_cast<size_t>(striped(encoder, rgb, 1280, 720).size() * 3 / 4));
  EXPECT_THROW(encoder.encode(rgb.data(), 1280, 720, half.data(), half.size()), EncodeError);
  JpegEncoder reference(85, Subsampling::S420);
  EXPECT_EQ(striped(encoder, rgb, 1280, 720),
            single(reference, rgb, 1280, 720, encoder.stripe_mcu_rows(1280, 720) * 80));
}

TEST(JpegStripes, BadThreadCountsAreRefused) {
  EXPECT_THROW(StripedJpegEncoder(85, Subsampling::S420, 0), InvalidArgument);
  EXPECT_THROW(StripedJpegEncoder(85, Subsampling::S420, StripedJpegEncoder::kMaxThreads + 1), InvalidArgument);
  JpegEncoder encoder(85, Subsampling::S420);
  std::vector<uint8_t> rgb(16 * 16 * 3), out(encoder.max_bytes(16, 16));
  EXPECT_THROW(encoder.encode(rgb.data(), 16, 16, out.data(), out.size(), 65536), InvalidArgument);
}
