// rgb_to_jfif_i420: tjEncodeYUV3's bytes (scalar and AVX2 paths) for random and extreme frames of many sizes.
#include <gtest/gtest.h>
#include <turbojpeg.h>

#include <random>
#include <vector>

#include "core/Codec.h"
#include "core/I420.h"

using namespace reactor;

namespace {

std::vector<uint8_t> tj_i420(const std::vector<uint8_t>& rgb, int w, int h) {
  UniqueTjHandle tj = make_tj_compressor();
  std::vector<uint8_t> out(tjBufSizeYUV2(w, 1, h, TJSAMP_420));
  if (tjEncodeYUV3(tj.get(), rgb.data(), w, 0, h, TJPF_RGB, out.data(), 1, TJSAMP_420, 0) != 0) {
    ADD_FAILURE() << "tjEncodeYUV3: " << tjGetErrorStr2(tj.get());
  }
  return out;
}

std::vector<uint8_t> ours(const std::vector<uint8_t>& rgb, int w, int h, bool simd) {
  const I420Layout layout = i420_layout(w, h);
  std::vector<uint8_t> out(layout.packed_bytes());
  detail::rgb_to_jfif_i420(rgb.data(), w, h, packed_i420_planes(out.data(), layout), simd);
  return out;
}

struct Size {
  int w, h;
};
// Around the AVX2 kernel's 32-pixel step, odd and even, one row and one column.
const Size kSizes[] = {{1, 1},  {1, 2},   {2, 1},   {3, 3},    {7, 5},    {31, 3},     {32, 2},
                       {33, 9}, {63, 17}, {64, 48}, {95, 33},  {97, 1},   {333, 197},  {640, 480},
                       {1, 64}, {2, 2},   {66, 7},  {1281, 7}, {128, 96}, {1279, 721}, {159, 160}};

}  // namespace

TEST(I420, LayoutIsTurboJpegsWithPadOne) {
  for (const Size& s : kSizes) {
    const I420Layout layout = i420_layout(s.w, s.h);
    EXPECT_EQ(layout.packed_bytes(), tjBufSizeYUV2(s.w, 1, s.h, TJSAMP_420)) << s.w << "x" << s.h;
    EXPECT_EQ(layout.luma_width, tjPlaneWidth(0, s.w, TJSAMP_420));
    EXPECT_EQ(layout.chroma_height, tjPlaneHeight(1, s.h, TJSAMP_420));
  }
}

TEST(I420, RandomFramesEqualTjEncodeYuv3OnBothPaths) {
  std::mt19937 rng(15);
  for (const Size& s : kSizes) {
    std::vector<uint8_t> rgb(static_cast<size_t>(s.w) * s.h * 3);
    for (auto& byte : rgb) byte = static_cast<uint8_t>(rng());
    const auto expected = tj_i420(rgb, s.w, s.h);
    EXPECT_EQ(ours(rgb, s.w, s.h, false), expected) << "scalar, " << s.w << "x" << s.h;
    EXPECT_EQ(ours(rgb, s.w, s.h, true), expected)
        << "AVX2 (CPU has it: " << detail::cpu_has_avx2() << "), " << s.w << "x" << s.h;
  }
}

TEST(I420, ExtremeColoursEqualTjEncodeYuv3OnBothPaths) {
  // Saturated primaries, black, white and single-channel extremes: the rounding at both ends.
  const uint8_t colours[][3] = {{0, 0, 0},     {255, 255, 255}, {255, 0, 0},   {0, 255, 0},     {0, 0, 255},
                                {255, 255, 0}, {0, 255, 255},   {255, 0, 255}, {128, 128, 128}, {1, 254, 1}};
  const int w = 70, h = 6;
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < rgb.size() / 3; ++i) {
    const auto& c = colours[(i * 7 + i / w) % 10];  // neighbours differ, so 2x2 blocks mix them
    for (int k = 0; k < 3; ++k) rgb[i * 3 + k] = c[k];
  }
  const auto expected = tj_i420(rgb, w, h);
  EXPECT_EQ(ours(rgb, w, h, false), expected);
  EXPECT_EQ(ours(rgb, w, h, true), expected);
}

TEST(I420, StridedPlanesLeaveTheRowPaddingAlone) {
  const int w = 67, h = 5;
  std::mt19937 rng(3);
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (auto& byte : rgb) byte = static_cast<uint8_t>(rng());
  const I420Layout layout = i420_layout(w, h);
  const int64_t ys = 96, cs = 48;
  std::vector<uint8_t> y(static_cast<size_t>(ys * layout.luma_height), 0xEE);
  std::vector<uint8_t> u(static_cast<size_t>(cs * layout.chroma_height), 0xEE), v(u);
  rgb_to_jfif_i420(rgb.data(), w, h, I420Planes{y.data(), u.data(), v.data(), ys, cs});
  const auto packed = tj_i420(rgb, w, h);
  const uint8_t* py = packed.data();
  const uint8_t* pu = py + layout.luma_width * layout.luma_height;
  const uint8_t* pv = pu + layout.chroma_width * layout.chroma_height;
  for (int64_t row = 0; row < layout.luma_height; ++row) {
    for (int64_t x = 0; x < ys; ++x) {
      const uint8_t want = x < layout.luma_width ? py[row * layout.luma_width + x] : 0xEE;
      ASSERT_EQ(y[static_cast<size_t>(row * ys + x)], want) << "Y row " << row << " column " << x;
    }
  }
  for (int64_t row = 0; row < layout.chroma_height; ++row) {
    for (int64_t x = 0; x < cs; ++x) {
      const bool inside = x < layout.chroma_width;
      ASSERT_EQ(u[static_cast<size_t>(row * cs + x)], inside ? pu[row * layout.chroma_width + x] : 0xEE);
      ASSERT_EQ(v[static_cast<size_t>(row * cs + x)], inside ? pv[row * layout.chroma_width + x] : 0xEE);
    }
  }
}
