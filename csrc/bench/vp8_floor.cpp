// The VP8 floor: a bare libvpx encode loop over the same frames and settings as the engine's encoder.
//
//   vp8_floor RGB_FILE WIDTH HEIGHT FRAMES BITRATE SPEED THREADS KEYFRAME_INTERVAL INTERVAL_MS
//
// RGB_FILE holds K packed RGB24 frames, converted to I420 up front with the engine's own converter
// (so libvpx sees the very same pixels); frame i of FRAMES is frame i % K, pts i * 33.333 ms.
// INTERVAL_MS > 0 paces the loop (sleeps to each frame's slot), 0 runs it hot. Prints one JSON object:
// per-frame encode_ns (vpx_codec_encode + draining its packet), convert_ns, bytes and keyframe flags.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/Clock.h"
#include "core/Vp8Codec.h"

using namespace reactor;

int main(int argc, char** argv) {
  if (argc != 10) {
    std::fprintf(stderr, "usage: %s RGB_FILE WIDTH HEIGHT FRAMES BITRATE SPEED THREADS KEYFRAME_INTERVAL INTERVAL_MS\n",
                 argv[0]);
    return 2;
  }
  const int64_t width = std::atoll(argv[2]), height = std::atoll(argv[3]);
  const int frames = std::atoi(argv[4]);
  const Vp8Settings settings{std::atoll(argv[5]), std::atoi(argv[6]), std::atoi(argv[7]), std::atoi(argv[8])};
  const double interval_ms = std::atof(argv[9]);
  try {
    std::ifstream file(argv[1], std::ios::binary);
    const size_t frame_bytes = static_cast<size_t>(width * height * 3);
    std::vector<uint8_t> rgb(frame_bytes);
    std::vector<UniqueVpxImage> images;
    std::vector<int64_t> convert_ns;
    while (file.read(reinterpret_cast<char*>(rgb.data()), static_cast<std::streamsize>(frame_bytes))) {
      images.push_back(alloc_i420_image(width, height));
      rgb_to_i420(rgb.data(), width, height, *images.back());  // first touch: page faults
      const int64_t start = now_ns();
      rgb_to_i420(rgb.data(), width, height, *images.back());  // timed warm, as the engine's image
      convert_ns.push_back(now_ns() - start);
    }
    if (images.empty()) {
      std::fprintf(stderr, "vp8_floor: %s holds no %lldx%lld RGB24 frame\n", argv[1], static_cast<long long>(width),
                   static_cast<long long>(height));
      return 2;
    }
    const vpx_codec_enc_cfg_t cfg = vp8_config(width, height, settings);
    UniqueVpxEncoder encoder = open_vp8_encoder(cfg, settings);
    std::vector<int64_t> encode_ns(frames), bytes(frames);
    std::vector<int> keyframes(frames);
    constexpr int64_t kStepUs = 33'333;
    const int64_t t0 = now_ns();
    for (int i = 0; i < frames; ++i) {
      if (interval_ms > 0) {
        const int64_t slot_ns = t0 + static_cast<int64_t>(i * interval_ms * 1e6);
        const int64_t wait = slot_ns - now_ns();
        if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      }
      vpx_image_t* image = images[static_cast<size_t>(i) % images.size()].get();
      const int64_t start = now_ns();
      if (vpx_codec_encode(encoder.get(), image, i * kStepUs, kStepUs, 0, VPX_DL_REALTIME) != VPX_CODEC_OK) {
        std::fprintf(stderr, "vp8_floor: %s\n", vpx_codec_error(encoder.get()));
        return 1;
      }
      vpx_codec_iter_t iter = nullptr;
      while (const vpx_codec_cx_pkt_t* packet = vpx_codec_get_cx_data(encoder.get(), &iter)) {
        if (packet->kind != VPX_CODEC_CX_FRAME_PKT) continue;
        bytes[i] += static_cast<int64_t>(packet->data.frame.sz);
        keyframes[i] = (packet->data.frame.flags & VPX_FRAME_IS_KEY) != 0;
      }
      encode_ns[i] = now_ns() - start;
    }
    auto list = [](const auto& values) {
      std::string out = "[";
      for (size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
      return out + "]";
    };
    std::printf("{\"vpx\": \"%s\", \"encode_ns\": %s, \"convert_ns\": %s, \"bytes\": %s, \"keyframe\": %s}\n",
                vpx_codec_version_str(), list(encode_ns).c_str(), list(convert_ns).c_str(), list(bytes).c_str(),
                list(keyframes).c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "vp8_floor: %s\n", error.what());
    return 1;
  }
  return 0;
}
