// The VP8 codec: libvpx handles owned by unique_ptrs, an I420 image preallocated per frame size.
#include "core/Vp8Codec.h"

#include <vpx/vp8cx.h>

#include <algorithm>
#include <cstring>

#include "core/Error.h"
#include "core/I420.h"

namespace reactor {

namespace {

constexpr int64_t kNominalStepUs = 33'333;  // the first frame's duration: 30 fps until pts says otherwise
constexpr int64_t kMinStepUs = 1'000;
constexpr int64_t kMaxStepUs = 100'000;

const char* vpx_detail(vpx_codec_ctx_t* ctx) {
  const char* detail = vpx_codec_error_detail(ctx);
  return detail != nullptr ? detail : "no detail";
}

template <typename T>
void control(vpx_codec_ctx_t* ctx, int id, const char* name, T value) {
  const vpx_codec_err_t rc = vpx_codec_control_(ctx, id, value);
  RE_CHECK(rc == VPX_CODEC_OK, EncodeError, "libvpx control ", name, "=", value, " failed: ", vpx_codec_error(ctx),
           " (", vpx_detail(ctx), ")");
}

// (value * scale + offset) / 255 over a plane's visible rows, offset folding in the rounding and
// the range's base. Every intermediate fits uint16 (at most 255 * 224 + 4095 = 61215), so the
// compiler vectorises the loop.
void scale_plane(uint8_t* plane, int stride, int64_t width, int64_t height, uint16_t scale, uint16_t offset) {
  for (int64_t y = 0; y < height; ++y) {
    uint8_t* row = plane + y * stride;
    for (int64_t x = 0; x < width; ++x) {
      row[x] = static_cast<uint8_t>(static_cast<uint16_t>(row[x] * scale + offset) / 255);
    }
  }
}

class Vp8Codec final : public FrameCodec {
 public:
  explicit Vp8Codec(const Vp8Settings& settings) : settings_(settings) {}
  CodecKind kind() const override { return CodecKind::Vp8; }
  size_t max_bytes(int64_t w, int64_t h) const override { return vp8_max_packet_bytes(w, h); }
  void reserve(int64_t w, int64_t h) override {
    RE_CHECK(w <= kVp8MaxDimension && h <= kVp8MaxDimension, InvalidArgument, "VP8 frames are at most ",
             kVp8MaxDimension, "x", kVp8MaxDimension, "; the frame ring takes up to ", w, "x", h,
             " (lower max_width / max_height)");
    open(w, h);
  }

  EncodedFrame encode(const uint8_t* rgb, int64_t w, int64_t h, const FrameControl& control, uint8_t* dst,
                      size_t capacity) override {
    if (!encoder_ || w != width_ || h != height_) open(w, h);  // rare: a new stream, starting with a key frame
    if (control.bitrate_bps != settings_.bitrate_bps) apply_bitrate(control.bitrate_bps);
    rgb_to_i420(rgb, w, h, *image_);
    // libvpx spreads the bitrate over the frame rate it infers from the timestamps. They follow
    // pts, each step clamped to 1..100 ms, so that a pause (an output disabled, a model that
    // stalls) neither floods nor starves the frame after it.
    int64_t step_us = kNominalStepUs;
    if (frames_ > 0) {
      step_us = std::clamp((control.pts_ns - last_pts_ns_) / 1000, kMinStepUs, kMaxStepUs);
      vpx_pts_ += step_us;
    }
    last_pts_ns_ = control.pts_ns;
    ++frames_;
    const vpx_enc_frame_flags_t flags = control.keyframe ? VPX_EFLAG_FORCE_KF : 0;
    const vpx_codec_err_t rc = vpx_codec_encode(encoder_.get(), image_.get(), vpx_pts_,
                                                static_cast<unsigned long>(step_us), flags, VPX_DL_REALTIME);
    RE_CHECK(rc == VPX_CODEC_OK, EncodeError, "VP8 encoding of a ", w, "x", h,
             " frame failed: ", vpx_codec_error(encoder_.get()), " (", vpx_detail(encoder_.get()), ")");
    EncodedFrame out{0, false};
    vpx_codec_iter_t iter = nullptr;
    while (const vpx_codec_cx_pkt_t* packet = vpx_codec_get_cx_data(encoder_.get(), &iter)) {
      if (packet->kind != VPX_CODEC_CX_FRAME_PKT) continue;
      // No lag frames and no alt-ref: one compressed frame per input frame, or none if dropped.
      RE_CHECK(out.size == 0, EncodeError, "libvpx returned more than one VP8 frame for one input frame");
      const size_t bytes = packet->data.frame.sz;
      RE_CHECK(bytes <= capacity, EncodeError, "VP8 frame of ", bytes, " bytes exceeds the packet buffer of ",
               capacity);
      std::memcpy(dst, packet->data.frame.buf, bytes);
      out.size = bytes;
      out.keyframe = (packet->data.frame.flags & VPX_FRAME_IS_KEY) != 0;
    }
    return out;
  }

 private:
  void open(int64_t w, int64_t h) {
    encoder_.reset();
    cfg_ = vp8_config(w, h, settings_);
    encoder_ = open_vp8_encoder(cfg_, settings_);
    image_ = alloc_i420_image(w, h);
    width_ = w;
    height_ = h;
    frames_ = 0;
    vpx_pts_ = 0;
  }

  void apply_bitrate(int64_t bps) {
    settings_.bitrate_bps = bps;
    cfg_.rc_target_bitrate = vp8_config(width_, height_, settings_).rc_target_bitrate;
    const vpx_codec_err_t rc = vpx_codec_enc_config_set(encoder_.get(), &cfg_);
    RE_CHECK(rc == VPX_CODEC_OK, EncodeError, "setting the VP8 bitrate to ", bps,
             " bps failed: ", vpx_codec_error(encoder_.get()), " (", vpx_detail(encoder_.get()), ")");
  }

  Vp8Settings settings_;
  vpx_codec_enc_cfg_t cfg_{};
  UniqueVpxEncoder encoder_;
  UniqueVpxImage image_;
  int64_t width_ = 0;
  int64_t height_ = 0;
  int64_t frames_ = 0;  // since the encoder was opened
  int64_t vpx_pts_ = 0;
  int64_t last_pts_ns_ = 0;
};

}  // namespace

Vp8Settings vp8_settings(const CodecOptions& options) {
  check_bitrate(options.bitrate_bps);
  RE_CHECK(options.vp8_speed >= -16 && options.vp8_speed <= 16, InvalidArgument,
           "vp8_speed (libvpx cpu-used) must be between -16 and 16, got ", options.vp8_speed);
  RE_CHECK(options.vp8_threads >= 1 && options.vp8_threads <= 16, InvalidArgument,
           "vp8_threads must be between 1 and 16, got ", options.vp8_threads);
  RE_CHECK(options.keyframe_interval >= 0, InvalidArgument,
           "keyframe_interval must be >= 0 frames (0: key frames only on request), got ", options.keyframe_interval);
  return Vp8Settings{options.bitrate_bps, options.vp8_speed, options.vp8_threads, options.keyframe_interval};
}

void VpxEncoderDeleter::operator()(vpx_codec_ctx_t* ctx) const {
  vpx_codec_destroy(ctx);
  delete ctx;
}

vpx_codec_enc_cfg_t vp8_config(int64_t width, int64_t height, const Vp8Settings& settings) {
  RE_CHECK(width >= 1 && height >= 1 && width <= kVp8MaxDimension && height <= kVp8MaxDimension, InvalidArgument,
           "VP8 frames are 1x1 to ", kVp8MaxDimension, "x", kVp8MaxDimension, ", got ", width, "x", height);
  vpx_codec_enc_cfg_t cfg{};
  const vpx_codec_err_t rc = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &cfg, 0);
  RE_CHECK(rc == VPX_CODEC_OK, EncodeError, "libvpx has no default VP8 configuration: ", vpx_codec_err_to_string(rc));
  cfg.g_w = static_cast<unsigned int>(width);
  cfg.g_h = static_cast<unsigned int>(height);
  cfg.g_timebase = {1, 1'000'000};  // microseconds
  cfg.g_threads = static_cast<unsigned int>(settings.threads);
  cfg.g_pass = VPX_RC_ONE_PASS;
  cfg.g_lag_in_frames = 0;  // each frame's packet leaves with that frame
  cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
  cfg.rc_end_usage = VPX_CBR;
  cfg.rc_target_bitrate = static_cast<unsigned int>(std::max<int64_t>(1, (settings.bitrate_bps + 500) / 1000));
  cfg.rc_dropframe_thresh = 0;  // never skip a frame: one packet per frame
  cfg.rc_resize_allowed = 0;
  // WebRTC's realtime rate-control settings: a small buffer (latency), quick to undershoot.
  cfg.rc_min_quantizer = 2;
  cfg.rc_max_quantizer = 56;
  cfg.rc_undershoot_pct = 100;
  cfg.rc_overshoot_pct = 15;
  cfg.rc_buf_initial_sz = 500;
  cfg.rc_buf_optimal_sz = 600;
  cfg.rc_buf_sz = 1000;
  cfg.kf_mode = settings.keyframe_interval > 0 ? VPX_KF_AUTO : VPX_KF_DISABLED;
  cfg.kf_min_dist = 0;
  cfg.kf_max_dist = static_cast<unsigned int>(settings.keyframe_interval);
  return cfg;
}

UniqueVpxEncoder open_vp8_encoder(const vpx_codec_enc_cfg_t& cfg, const Vp8Settings& settings) {
  UniqueVpxEncoder owner;
  auto ctx = std::make_unique<vpx_codec_ctx_t>();
  const vpx_codec_err_t rc = vpx_codec_enc_init(ctx.get(), vpx_codec_vp8_cx(), &cfg, 0);
  RE_CHECK(rc == VPX_CODEC_OK, EncodeError, "opening a ", cfg.g_w, "x", cfg.g_h,
           " VP8 encoder failed: ", vpx_codec_err_to_string(rc), " (", vpx_detail(ctx.get()), ")");
  owner.reset(ctx.release());  // initialised: from here the deleter destroys it
  int partitions = 0;          // log2 of the token partitions, which libvpx's threads encode in parallel
  while ((2 << partitions) <= settings.threads && partitions < 3) ++partitions;
  control(owner.get(), VP8E_SET_CPUUSED, "VP8E_SET_CPUUSED", settings.speed);
  control(owner.get(), VP8E_SET_TOKEN_PARTITIONS, "VP8E_SET_TOKEN_PARTITIONS", partitions);
  control(owner.get(), VP8E_SET_ENABLEAUTOALTREF, "VP8E_SET_ENABLEAUTOALTREF", 0);
  control(owner.get(), VP8E_SET_NOISE_SENSITIVITY, "VP8E_SET_NOISE_SENSITIVITY", 0);
  control(owner.get(), VP8E_SET_STATIC_THRESHOLD, "VP8E_SET_STATIC_THRESHOLD", 1);
  // A key frame may take 9x an average frame's bits: big enough to look right, small enough not to
  // stall a CBR stream (WebRTC's cap at 30 fps).
  control(owner.get(), VP8E_SET_MAX_INTRA_BITRATE_PCT, "VP8E_SET_MAX_INTRA_BITRATE_PCT", 900u);
  return owner;
}

UniqueVpxImage alloc_i420_image(int64_t width, int64_t height) {
  // Rows aligned to 32 bytes; odd sizes get an even, padded plane (TurboJPEG writes whole 2x2 blocks).
  UniqueVpxImage image(vpx_img_alloc(nullptr, VPX_IMG_FMT_I420, static_cast<unsigned int>(width),
                                     static_cast<unsigned int>(height), 32));
  RE_CHECK(image != nullptr, AllocationError, "cannot allocate a ", width, "x", height, " I420 image");
  return image;
}

size_t vp8_max_packet_bytes(int64_t width, int64_t height) {
  // libvpx's vp8e_init sizes its output buffer so; a frame can never be larger.
  return std::max<size_t>(static_cast<size_t>(width * height * 3 / 2 * 2), 32768);
}

void rgb_to_i420(const uint8_t* rgb, int64_t width, int64_t height, vpx_image_t& image) {
  uint8_t* planes[3] = {image.planes[VPX_PLANE_Y], image.planes[VPX_PLANE_U], image.planes[VPX_PLANE_V]};
  const int strides[3] = {image.stride[VPX_PLANE_Y], image.stride[VPX_PLANE_U], image.stride[VPX_PLANE_V]};
  rgb_to_jfif_i420(rgb, width, height, I420Planes{planes[0], planes[1], planes[2], strides[0], strides[1]});
  // Full range to BT.601 limited range: Y' = 16 + Y * 219/255, C' = 128 + (C - 128) * 224/255, rounded.
  scale_plane(planes[0], strides[0], width, height, 219, 16 * 255 + 127);
  const int64_t cw = (width + 1) / 2, ch = (height + 1) / 2;
  scale_plane(planes[1], strides[1], cw, ch, 224, 128 * 255 - 128 * 224 + 127);
  scale_plane(planes[2], strides[2], cw, ch, 224, 128 * 255 - 128 * 224 + 127);
}

std::unique_ptr<FrameCodec> make_vp8_codec(const CodecOptions& options) {
  return std::make_unique<Vp8Codec>(vp8_settings(options));
}

}  // namespace reactor
