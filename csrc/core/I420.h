// RGB24 to 4:2:0 planar YCbCr in JPEG's full range (JFIF), the bytes libjpeg-turbo's tjEncodeYUV3 gives.
#pragma once

#include <cstddef>
#include <cstdint>

namespace reactor {

// The planes of a width x height frame: as libjpeg-turbo lays them out, an odd width or height pads
// the luma plane to the next even size (the last column / row repeated), so chroma is exactly half.
struct I420Layout {
  int64_t luma_width = 0, luma_height = 0;
  int64_t chroma_width = 0, chroma_height = 0;
  size_t packed_bytes() const {  // Y, U, V back to back with no row padding (tjEncodeYUV3's pad = 1)
    return static_cast<size_t>(luma_width * luma_height + 2 * chroma_width * chroma_height);
  }
};
I420Layout i420_layout(int64_t width, int64_t height);

struct I420Planes {
  uint8_t* y = nullptr;
  uint8_t* u = nullptr;
  uint8_t* v = nullptr;
  int64_t y_stride = 0;  // bytes from one row to the next, at least the layout's luma_width
  int64_t chroma_stride = 0;
};
// The planes packed into one buffer of layout.packed_bytes().
I420Planes packed_i420_planes(uint8_t* buffer, const I420Layout& layout);

// Note: libjpeg's colour conversion (jccolor.c: Y = 0.299 R + 0.587 G + 0.114 B, Cb and Cr about
// 128, in 16-bit fixed point with its rounding) and its 2x2 box downsampling with the alternating
// 1, 2 bias (jcsample.c h2v2_downsample), byte for byte (test_i420.cpp compares with tjEncodeYUV3),
// with no allocation and no libjpeg object per call (tjEncodeYUV3 made 17 mallocs and 17 frees per
// frame). An AVX2 kernel does 32 pixels at a time where the CPU has AVX2; the scalar code does the
// rest and every frame on other CPUs. Any thread; planes laid out as i420_layout(width, height).
void rgb_to_jfif_i420(const uint8_t* rgb, int64_t width, int64_t height, const I420Planes& out);

namespace detail {
// The same conversion with the AVX2 kernel off (simd = false) or, where the CPU has AVX2, on: for tests.
void rgb_to_jfif_i420(const uint8_t* rgb, int64_t width, int64_t height, const I420Planes& out, bool simd);
bool cpu_has_avx2();
}  // namespace detail

}  // namespace reactor
