// RGB24 -> JFIF I420: the scalar reference of libjpeg's arithmetic and an AVX2 kernel equal to it.
#include "core/I420.h"

#include <immintrin.h>

#include <algorithm>

#include "core/Error.h"

namespace reactor {

namespace {

// jccolor.c's constants: FIX(x) rounds x * 2^16, its tables hold FIX(c) * sample, and each output
// is the sum of three table entries shifted right by 16. Cb and Cr round by 0.5 - 2^-16, so that
// 255 never rounds up to 256.
constexpr int32_t fix(double x) { return static_cast<int32_t>(x * 65536 + 0.5); }
constexpr int32_t kYR = fix(0.29900), kYG = fix(0.58700), kYB = fix(0.11400);
constexpr int32_t kCbR = fix(0.16874), kCbG = fix(0.33126), kHalfOne = fix(0.50000);  // B's to Cb = R's to Cr
constexpr int32_t kCrG = fix(0.41869), kCrB = fix(0.08131);
constexpr int32_t kYRound = 1 << 15;
constexpr int32_t kChromaRound = (128 << 16) + (1 << 15) - 1;

inline uint8_t luma(int32_t r, int32_t g, int32_t b) {
  return static_cast<uint8_t>((kYR * r + kYG * g + kYB * b + kYRound) >> 16);
}
inline uint8_t blue_chroma(int32_t r, int32_t g, int32_t b) {
  return static_cast<uint8_t>((kHalfOne * b - kCbR * r - kCbG * g + kChromaRound) >> 16);
}
inline uint8_t red_chroma(int32_t r, int32_t g, int32_t b) {
  return static_cast<uint8_t>((kHalfOne * r - kCrG * g - kCrB * b + kChromaRound) >> 16);
}

// One pair of rows (in0 and in1, the same row when the height is odd), columns [x, width): a
// missing right column (odd width) repeats the last one, as libjpeg's expand_right_edge does.
void convert_pair_scalar(const uint8_t* in0, const uint8_t* in1, int64_t x, int64_t width, uint8_t* y0, uint8_t* y1,
                         uint8_t* u, uint8_t* v) {
  for (; x < width; x += 2) {
    const int64_t x1 = std::min(x + 1, width - 1);
    const uint8_t* p[4] = {in0 + 3 * x, in0 + 3 * x1, in1 + 3 * x, in1 + 3 * x1};
    int32_t cb = 0, cr = 0;
    for (const uint8_t* q : p) {
      cb += blue_chroma(q[0], q[1], q[2]);
      cr += red_chroma(q[0], q[1], q[2]);
    }
    y0[x] = luma(p[0][0], p[0][1], p[0][2]);
    y0[x + 1] = luma(p[1][0], p[1][1], p[1][2]);
    y1[x] = luma(p[2][0], p[2][1], p[2][2]);
    y1[x + 1] = luma(p[3][0], p[3][1], p[3][2]);
    const int32_t bias = 1 + static_cast<int32_t>((x / 2) & 1);  // 1, 2, 1, 2... along a chroma row
    u[x / 2] = static_cast<uint8_t>((cb + bias) >> 2);
    v[x / 2] = static_cast<uint8_t>((cr + bias) >> 2);
  }
}

// --- AVX2: 32 pixels of a row pair per step, exact to the scalar code (integer arithmetic alike). ---

// pshufb masks that gather channel c of 16 packed RGB pixels from chunk k (bytes 16k..16k+15) of
// their 48 bytes; 0x80 clears a byte that comes from another chunk.
struct GatherMasks {
  alignas(16) uint8_t bytes[3][3][16];
  constexpr GatherMasks() : bytes{} {
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < 3; ++k) {
        for (int i = 0; i < 16; ++i) {
          const int source = 3 * i + c;
          bytes[c][k][i] = source / 16 == k ? static_cast<uint8_t>(source % 16) : uint8_t{0x80};
        }
      }
    }
  }
};
constexpr GatherMasks kGather;

// The 16-bit chroma of one row's 32 pixels: lo holds pixels 0-7 and 16-23, hi 8-15 and 24-31
// (AVX2 unpacks work within each 128-bit lane).
struct ChromaRow {
  __m256i cb_lo, cb_hi, cr_lo, cr_hi;
};

// (No lambdas in the AVX2 code: a lambda would not inherit the target attribute.)
__attribute__((target("avx2"))) inline __m256i gather_mask(int channel, int chunk) {
  return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kGather.bytes[channel][chunk])));
}

__attribute__((target("avx2"))) inline __m256i gather_channel(__m256i c0, __m256i c1, __m256i c2, int channel) {
  return _mm256_or_si256(_mm256_or_si256(_mm256_shuffle_epi8(c0, gather_mask(channel, 0)),
                                         _mm256_shuffle_epi8(c1, gather_mask(channel, 1))),
                         _mm256_shuffle_epi8(c2, gather_mask(channel, 2)));
}

// Bytes lo..lo+15 of in in lane 0, hi..hi+15 in lane 1.
__attribute__((target("avx2"))) inline __m256i load_lanes(const uint8_t* in, int lo, int hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + lo))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + hi)), 1);
}

// Y, Cb and Cr of 8 pixels (16-bit lanes of r, g, b) as 32-bit values: madd pairs (r, g) and (g, b)
// with 16-bit coefficients (0.587's 38470 split as 19235 + 19235), and 32768 * b or r as b << 16 >> 1.
struct Ycc32 {
  __m256i y, cb, cr;
};
__attribute__((target("avx2"))) inline Ycc32 ycc32(__m256i rg, __m256i gb, __m256i r_high, __m256i b_high) {
  const __m256i y_rg = _mm256_set1_epi32(static_cast<int32_t>((kYG / 2) << 16 | kYR));
  const __m256i y_gb = _mm256_set1_epi32(static_cast<int32_t>(kYB << 16 | (kYG - kYG / 2)));
  const __m256i cb_rg = _mm256_set1_epi32(
      static_cast<int32_t>(static_cast<uint32_t>(-kCbG) << 16 | (static_cast<uint32_t>(-kCbR) & 0xFFFF)));
  const __m256i cr_gb = _mm256_set1_epi32(
      static_cast<int32_t>(static_cast<uint32_t>(-kCrB) << 16 | (static_cast<uint32_t>(-kCrG) & 0xFFFF)));
  const __m256i y_round = _mm256_set1_epi32(kYRound), c_round = _mm256_set1_epi32(kChromaRound);
  Ycc32 out;
  out.y = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(rg, y_rg), _mm256_madd_epi16(gb, y_gb)), y_round), 16);
  out.cb = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(rg, cb_rg), _mm256_srli_epi32(b_high, 1)), c_round), 16);
  out.cr = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(gb, cr_gb), _mm256_srli_epi32(r_high, 1)), c_round), 16);
  return out;
}

// 16 pixels (16-bit lanes) -> their Y (16-bit) and, into cb / cr, their chroma (16-bit).
__attribute__((target("avx2"))) inline __m256i convert16(__m256i r, __m256i g, __m256i b, __m256i* cb, __m256i* cr) {
  const __m256i zero = _mm256_setzero_si256();
  const Ycc32 lo = ycc32(_mm256_unpacklo_epi16(r, g), _mm256_unpacklo_epi16(g, b), _mm256_unpacklo_epi16(zero, r),
                         _mm256_unpacklo_epi16(zero, b));
  const Ycc32 hi = ycc32(_mm256_unpackhi_epi16(r, g), _mm256_unpackhi_epi16(g, b), _mm256_unpackhi_epi16(zero, r),
                         _mm256_unpackhi_epi16(zero, b));
  *cb = _mm256_packs_epi32(lo.cb, hi.cb);
  *cr = _mm256_packs_epi32(lo.cr, hi.cr);
  return _mm256_packs_epi32(lo.y, hi.y);
}

// One row's 32 pixels at in: stores their Y at y, returns their chroma.
__attribute__((target("avx2"))) inline ChromaRow convert_row32(const uint8_t* in, uint8_t* y) {
  // Lane 0 holds pixels 0-15 (bytes 0-47), lane 1 pixels 16-31 (bytes 48-95).
  const __m256i c0 = load_lanes(in, 0, 48), c1 = load_lanes(in, 16, 64), c2 = load_lanes(in, 32, 80);
  const __m256i r = gather_channel(c0, c1, c2, 0), g = gather_channel(c0, c1, c2, 1), b = gather_channel(c0, c1, c2, 2);
  const __m256i zero = _mm256_setzero_si256();
  ChromaRow out;
  const __m256i y_lo = convert16(_mm256_unpacklo_epi8(r, zero), _mm256_unpacklo_epi8(g, zero),
                                 _mm256_unpacklo_epi8(b, zero), &out.cb_lo, &out.cr_lo);
  const __m256i y_hi = convert16(_mm256_unpackhi_epi8(r, zero), _mm256_unpackhi_epi8(g, zero),
                                 _mm256_unpackhi_epi8(b, zero), &out.cb_hi, &out.cr_hi);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm256_packus_epi16(y_lo, y_hi));  // unpack order undone
  return out;
}

// The 2x2 sums of two rows' chroma (lo / hi as in ChromaRow), plus the bias, over 4: 16 samples.
__attribute__((target("avx2"))) inline __m256i downsample16(__m256i top_lo, __m256i top_hi, __m256i bottom_lo,
                                                            __m256i bottom_hi) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i bias = _mm256_setr_epi32(1, 2, 1, 2, 1, 2, 1, 2);
  // Adjacent 16-bit lanes are horizontal neighbours: madd with ones sums each pair. lo gives
  // chroma columns 0-3 and 8-11, hi 4-7 and 12-15; the pack restores 0-7 | 8-15.
  const __m256i lo =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(top_lo, bottom_lo), ones), bias), 2);
  const __m256i hi =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(top_hi, bottom_hi), ones), bias), 2);
  return _mm256_packs_epi32(lo, hi);
}

// Returns the first column it left for the scalar code (a multiple of 32).
__attribute__((target("avx2"))) int64_t convert_pair_avx2(const uint8_t* in0, const uint8_t* in1, int64_t width,
                                                          uint8_t* y0, uint8_t* y1, uint8_t* u, uint8_t* v) {
  int64_t x = 0;
  for (; x + 32 <= width; x += 32) {
    const ChromaRow top = convert_row32(in0 + 3 * x, y0 + x);
    const ChromaRow bottom = convert_row32(in1 + 3 * x, y1 + x);
    const __m256i cb = downsample16(top.cb_lo, top.cb_hi, bottom.cb_lo, bottom.cb_hi);
    const __m256i cr = downsample16(top.cr_lo, top.cr_hi, bottom.cr_lo, bottom.cr_hi);
    // packus gives cb 0-7, cr 0-7 | cb 8-15, cr 8-15; the permute puts each plane's 16 together.
    const __m256i both = _mm256_permute4x64_epi64(_mm256_packus_epi16(cb, cr), _MM_SHUFFLE(3, 1, 2, 0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(u + x / 2), _mm256_castsi256_si128(both));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(v + x / 2), _mm256_extracti128_si256(both, 1));
  }
  return x;
}

}  // namespace

I420Layout i420_layout(int64_t width, int64_t height) {
  I420Layout layout;
  layout.luma_width = (width + 1) / 2 * 2;
  layout.luma_height = (height + 1) / 2 * 2;
  layout.chroma_width = layout.luma_width / 2;
  layout.chroma_height = layout.luma_height / 2;
  return layout;
}

I420Planes packed_i420_planes(uint8_t* buffer, const I420Layout& layout) {
  I420Planes planes;
  planes.y = buffer;
  planes.u = buffer + layout.luma_width * layout.luma_height;
  planes.v = planes.u + layout.chroma_width * layout.chroma_height;
  planes.y_stride = layout.luma_width;
  planes.chroma_stride = layout.chroma_width;
  return planes;
}

namespace detail {

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

void rgb_to_jfif_i420(const uint8_t* rgb, int64_t width, int64_t height, const I420Planes& out, bool simd) {
  RE_CHECK(width >= 1 && height >= 1, InvalidArgument, "an I420 frame needs a width and height of at least 1, got ",
           width, "x", height);
  const bool avx2 = simd && cpu_has_avx2();
  const int64_t stride = width * 3;
  for (int64_t row = 0; row < height; row += 2) {
    const uint8_t* in0 = rgb + row * stride;
    const uint8_t* in1 = row + 1 < height ? in0 + stride : in0;  // an odd height repeats the last row
    uint8_t* y0 = out.y + row * out.y_stride;
    uint8_t* y1 = y0 + out.y_stride;
    uint8_t* u = out.u + row / 2 * out.chroma_stride;
    uint8_t* v = out.v + row / 2 * out.chroma_stride;
    const int64_t done = avx2 ? convert_pair_avx2(in0, in1, width, y0, y1, u, v) : 0;
    convert_pair_scalar(in0, in1, done, width, y0, y1, u, v);
  }
}

}  // namespace detail

void rgb_to_jfif_i420(const uint8_t* rgb, int64_t width, int64_t height, const I420Planes& out) {
  detail::rgb_to_jfif_i420(rgb, width, height, out, true);
}

}  // namespace reactor
