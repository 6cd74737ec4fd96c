// VP8 through libvpx for live streams: realtime deadline, no lag frames, error-resilient, CBR.
#pragma once

#include <vpx/vpx_encoder.h>
#include <vpx/vpx_image.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/Codec.h"

namespace reactor {

constexpr int64_t kVp8MaxDimension = 16383;  // the bitstream's 14-bit width and height

// One VP8 stream's libvpx settings. The codec and the benchmark's bare libvpx loop
// (csrc/bench/vp8_floor.cpp) both configure libvpx through vp8_config/open_vp8_encoder.
// speed is libvpx's cpu-used: a negative value fixes the speed at |speed| (16 fastest); a positive
// one lets libvpx pick the speed so that a frame takes at most (16 - speed)/16 of its frame interval.
struct Vp8Settings {
  int64_t bitrate_bps = 2'000'000;
  int speed = -12;
  int threads = 1;
  int keyframe_interval = 300;  // frames between automatic key frames; 0: the first and requested ones only
};
Vp8Settings vp8_settings(const CodecOptions& options);  // validated; throws InvalidArgument

struct VpxEncoderDeleter {
  void operator()(vpx_codec_ctx_t* ctx) const;  // vpx_codec_destroy, then the context itself
};
using UniqueVpxEncoder = std::unique_ptr<vpx_codec_ctx_t, VpxEncoderDeleter>;
struct VpxImageDeleter {
  void operator()(vpx_image_t* image) const { vpx_img_free(image); }
};
using UniqueVpxImage = std::unique_ptr<vpx_image_t, VpxImageDeleter>;

vpx_codec_enc_cfg_t vp8_config(int64_t width, int64_t height, const Vp8Settings& settings);
// An encoder for cfg (from vp8_config) with the settings' controls applied. Throws EncodeError.
UniqueVpxEncoder open_vp8_encoder(const vpx_codec_enc_cfg_t& cfg, const Vp8Settings& settings);
UniqueVpxImage alloc_i420_image(int64_t width, int64_t height);
// The largest packet libvpx can produce for a frame of that size (its own output buffer's size).
size_t vp8_max_packet_bytes(int64_t width, int64_t height);

// Packed RGB24 -> BT.601 limited-range I420 in image's planes (allocated by alloc_i420_image at
// this size), no allocation: rgb_to_jfif_i420 (I420.h: libjpeg's full-range YCbCr and 2x2
// downsampling, the bytes tjEncodeYUVPlanes gave, without its 17 mallocs and frees a frame), then
// one vectorised pass that scales the planes to the limited range VP8 decoders assume.
void rgb_to_i420(const uint8_t* rgb, int64_t width, int64_t height, vpx_image_t& image);

std::unique_ptr<FrameCodec> make_vp8_codec(const CodecOptions& options);

}  // namespace reactor
