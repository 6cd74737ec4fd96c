// Test helpers of the input path: patterned RGB frames, VP8 and JPEG packets made by the engine's own encoders.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "core/Codec.h"
#include "core/InputRing.h"

namespace reactor::testing {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kFrameNs = 33'333'333;

// Smooth moving gradients (chroma subsampling keeps them), different for every index.
inline std::vector<uint8_t> pattern(int64_t w, int64_t h, int index) {
  std::vector<uint8_t> frame(static_cast<size_t>(w * h * 3));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* p = &frame[static_cast<size_t>((y * w + x) * 3)];
      p[0] = static_cast<uint8_t>(x * 4 + index * 3);
      p[1] = static_cast<uint8_t>(y * 5 + index);
      p[2] = static_cast<uint8_t>(128 + 100 * std::sin(static_cast<double>(x + 2 * y + index * 7) / 9.0));
    }
  }
  return frame;
}

// pattern() with noise on top: real DCT work and real entropy coding for the JPEG tests.
inline std::vector<uint8_t> textured(int64_t w, int64_t h, int seed) {
  std::vector<uint8_t> frame = pattern(w, h, seed);
  std::mt19937 rng(static_cast<unsigned>(seed));
  for (auto& byte : frame) byte = static_cast<uint8_t>(byte + rng() % 24);
  return frame;
}

inline double mean_abs_error(const uint8_t* a, const uint8_t* b, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
  return sum / static_cast<double>(n);
}

struct Encoded {
  std::vector<uint8_t> bytes;
  bool keyframe = false;
  std::vector<uint8_t> source;  // the RGB frame it was made from
};

// count VP8 frames of w x h: the first and those in keyframes are key frames, the rest deltas.
inline std::vector<Encoded> vp8_stream(int64_t w, int64_t h, int count, const std::set<int>& keyframes = {},
                                       int first_index = 0) {
  CodecOptions options;
  options.kind = CodecKind::Vp8;
  options.keyframe_interval = 0;
  auto codec = make_codec(options);
  codec->reserve(w, h);
  std::vector<uint8_t> buffer(codec->max_bytes(w, h));
  std::vector<Encoded> out;
  for (int i = 0; i < count; ++i) {
    Encoded e;
    e.source = pattern(w, h, first_index + i);
    const FrameControl control{keyframes.count(i) > 0, options.bitrate_bps, i * kFrameNs};
    const EncodedFrame frame = codec->encode(e.source.data(), w, h, control, buffer.data(), buffer.size());
    e.bytes.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(frame.size));
    e.keyframe = frame.keyframe;
    out.push_back(std::move(e));
  }
  return out;
}

inline Encoded jpeg_frame(int64_t w, int64_t h, int index) {
  CodecOptions options;
  options.kind = CodecKind::Jpeg;
  options.quality = 95;
  auto codec = make_codec(options);
  std::vector<uint8_t> buffer(codec->max_bytes(w, h));
  Encoded e;
  e.source = pattern(w, h, index);
  const EncodedFrame frame = codec->encode(e.source.data(), w, h, FrameControl{}, buffer.data(), buffer.size());
  e.bytes.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(frame.size));
  e.keyframe = true;
  return e;
}

}  // namespace reactor::testing
