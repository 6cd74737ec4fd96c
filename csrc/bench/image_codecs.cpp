// The image codecs against the TurboJPEG calls they replace, same frames, same run (a hot loop):
// JpegEncoder vs tjCompress2 and rgb_to_jfif_i420 vs tjEncodeYUV3, per call p50 / p99 in microseconds.
//
//   image_codecs [ITERATIONS]
//
// Each iteration runs the old and the new call once each, alternately, on a textured frame
// (gradients plus noise); the bytes of each pair are checked equal before timing.
#include <turbojpeg.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/Codec.h"
#include "core/I420.h"
#include "core/JpegEncoder.h"

using namespace reactor;

namespace {

std::vector<uint8_t> textured(int w, int h) {
  std::vector<uint8_t> frame(static_cast<size_t>(w) * h * 3);
  std::mt19937 rng(7);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &frame[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>(x + rng() % 16);
      p[1] = static_cast<uint8_t>(y * 2 + rng() % 16);
      p[2] = static_cast<uint8_t>((x ^ y) + rng() % 16);
    }
  }
  return frame;
}

struct Percentiles {
  double p50, p99;
};
Percentiles percentiles(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]};
}

template <typename F>
double time_us(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
}

void report(const char* what, int w, int h, const std::vector<double>& old_us, const std::vector<double>& new_us) {
  const Percentiles o = percentiles(old_us), n = percentiles(new_us);
  std::printf("%-5s %4dx%-4d  old p50 %8.1f p99 %8.1f   new p50 %8.1f p99 %8.1f   new/old p50 %.2f\n", what, w, h,
              o.p50, o.p99, n.p50, n.p99, n.p50 / o.p50);
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 300;
  std::printf("hot loop, %d iterations each; AVX2 kernel for I420: %s\n", iterations,
              detail::cpu_has_avx2() ? "yes" : "no (scalar)");
  UniqueTjHandle tj = make_tj_compressor();
  for (const auto& [w, h] : {std::pair{512, 512}, std::pair{1280, 720}}) {
    const std::vector<uint8_t> rgb = textured(w, h);
    {
      JpegEncoder encoder(90, Subsampling::S420);
      encoder.reserve(w, h);
      std::vector<uint8_t> a(tjBufSize(w, h, TJSAMP_420)), b(a.size());
      unsigned long a_size = 0;  // NOLINT(runtime/int): TurboJPEG's own type
      size_t b_size = 0;
      auto old_call = [&] {
        unsigned char* dst = a.data();
        a_size = a.size();
        if (tjCompress2(tj.get(), rgb.data(), w, 0, h, TJPF_RGB, &dst, &a_size, TJSAMP_420, 90, TJFLAG_NOREALLOC) != 0)
          std::abort();
      };
      auto new_call = [&] { b_size = encoder.encode(rgb.data(), w, h, b.data(), b.size()); };
      old_call();
      new_call();
      if (a_size != b_size || !std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(b_size), b.begin())) {
        std::fprintf(stderr, "JPEG bytes differ at %dx%d\n", w, h);
        return 1;
      }
      std::vector<double> old_us, new_us;
      for (int i = 0; i < iterations; ++i) {
        old_us.push_back(time_us(old_call));
        new_us.push_back(time_us(new_call));
      }
      report("jpeg", w, h, old_us, new_us);
    }
    {
      const I420Layout layout = i420_layout(w, h);
      std::vector<uint8_t> a(layout.packed_bytes()), b(a.size());
      auto old_call = [&] {
        if (tjEncodeYUV3(tj.get(), rgb.data(), w, 0, h, TJPF_RGB, a.data(), 1, TJSAMP_420, 0) != 0) std::abort();
      };
      auto new_call = [&] { rgb_to_jfif_i420(rgb.data(), w, h, packed_i420_planes(b.data(), layout)); };
      old_call();
      new_call();
      if (a != b) {
        std::fprintf(stderr, "I420 bytes differ at %dx%d\n", w, h);
        return 1;
      }
      std::vector<double> old_us, new_us;
      for (int i = 0; i < iterations; ++i) {
        old_us.push_back(time_us(old_call));
        new_us.push_back(time_us(new_call));
      }
      report("i420", w, h, old_us, new_us);
    }
  }
  return 0;
}
