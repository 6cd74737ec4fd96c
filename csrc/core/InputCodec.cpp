// VP8 and JPEG packet decoders: header checks against the ring's slots before any decoding, then the
// library decodes (VP8 into libvpx's own frame buffers, converted into the slot; JPEG into the slot).
#include "core/InputCodec.h"

#include <turbojpeg.h>
#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>

#include <vector>

#include "core/Codec.h"

namespace reactor {

namespace {

int64_t even(int64_t v) { return (v + 1) / 2 * 2; }

const char* vpx_detail(vpx_codec_ctx_t* ctx) {
  const char* detail = vpx_codec_error_detail(ctx);
  return detail != nullptr ? detail : "no detail";
}

// Limited to full range over a plane's (even-padded) rows: Y' = (Y - 16) * 255/219 and
// C' = 128 + (C - 128) * 255/224, as (clamped - low) * k >> 8 in uint16 (at most 65390), so the
// compiler vectorises the loop.
void expand_plane(const uint8_t* src, int src_stride, uint8_t* dst, int64_t dst_stride, int64_t width, int64_t height,
                  uint16_t low, uint16_t high, uint16_t scale) {
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* in = src + y * src_stride;
    uint8_t* out = dst + y * dst_stride;
    for (int64_t x = 0; x < width; ++x) {
      uint16_t v = in[x];
      v = v < low ? low : (v > high ? high : v);
      out[x] = static_cast<uint8_t>(static_cast<uint16_t>((v - low) * scale + 128) >> 8);
    }
  }
}

class Vp8Decoder final : public PacketDecoder {
 public:
  Vp8Decoder(int64_t max_width, int64_t max_height)
      : tj_(tjInitDecompress()), scratch_(i420_scratch_bytes(max_width, max_height)) {
    RE_CHECK(tj_ != nullptr, DecodeError, "tjInitDecompress failed: ", tjGetErrorStr2(nullptr));
    vpx_codec_dec_cfg_t cfg{};
    cfg.threads = 1;
    cfg.w = static_cast<unsigned int>(max_width);
    cfg.h = static_cast<unsigned int>(max_height);
    const vpx_codec_err_t rc = vpx_codec_dec_init(&ctx_, vpx_codec_vp8_dx(), &cfg, 0);
    RE_CHECK(rc == VPX_CODEC_OK, DecodeError, "opening a VP8 decoder failed: ", vpx_codec_err_to_string(rc));
    open_ = true;
  }
  ~Vp8Decoder() override {
    if (open_) vpx_codec_destroy(&ctx_);
  }
  Vp8Decoder(const Vp8Decoder&) = delete;
  Vp8Decoder& operator=(const Vp8Decoder&) = delete;

  InputCodec kind() const override { return InputCodec::Vp8; }
  void lost() override { need_reference(); }
  bool awaiting_keyframe() const override { return awaiting_keyframe_; }
  void reset() override {
    have_reference_ = false;
    awaiting_keyframe_ = false;
    width_ = height_ = 0;
  }

  DecodeResult decode(const uint8_t* data, size_t size, int64_t capture_ns, int64_t arrival_ns,
                      InputRing& ring) override {
    // The frame tag (RFC 6386 9.1): bit 0 of the first byte is 0 for a key frame, whose header then
    // carries the start code 9d 01 2a and 14-bit width and height.
    if (size < 3) {
      need_reference();
      RE_THROW(DecodeError, "VP8 packet of ", size, " bytes is shorter than a frame tag");
    }
    const bool key = (data[0] & 1) == 0;
    if (key) {
      if (size < 10 || data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a) {
        need_reference();
        RE_THROW(DecodeError, "corrupt VP8 key frame: no start code in its ", size, "-byte header");
      }
      const int64_t w = (data[6] | (data[7] << 8)) & 0x3fff;
      const int64_t h = (data[8] | (data[9] << 8)) & 0x3fff;
      if (w == 0 || h == 0) {
        need_reference();
        RE_THROW(DecodeError, "corrupt VP8 key frame: its header says ", w, "x", h);
      }
      try {
        ring.check_size(w, h);  // before libvpx sizes its buffers for it
      } catch (const FrameError&) {
        need_reference();
        throw;
      }
    } else if (!have_reference_) {
      awaiting_keyframe_ = true;
      return DecodeResult{DecodeResult::Kind::Discarded, false, false};
    }
    if (vpx_codec_decode(&ctx_, data, static_cast<unsigned int>(size), nullptr, 0) != VPX_CODEC_OK) {
      need_reference();
      RE_THROW(DecodeError, "corrupt VP8 ", key ? "key" : "delta", " frame of ", size,
               " bytes: ", vpx_codec_error(&ctx_), " (", vpx_detail(&ctx_), ")");
    }
    int corrupted = 0;
    if (vpx_codec_control(&ctx_, VP8D_GET_FRAME_CORRUPTED, &corrupted) == VPX_CODEC_OK && corrupted != 0) {
      need_reference();
      RE_THROW(DecodeError, "corrupt VP8 ", key ? "key" : "delta", " frame of ", size,
               " bytes: libvpx marks it corrupted");
    }
    vpx_codec_iter_t iter = nullptr;
    const vpx_image_t* image = vpx_codec_get_frame(&ctx_, &iter);
    if (key) {
      have_reference_ = true;
      awaiting_keyframe_ = false;
    }
    if (image == nullptr) return DecodeResult{DecodeResult::Kind::Nothing, key, false};
    RE_CHECK(image->fmt == VPX_IMG_FMT_I420, DecodeError, "libvpx returned image format ", image->fmt, ", not I420");
    const int64_t w = image->d_w, h = image->d_h;
    DecodeResult result{DecodeResult::Kind::Frame, key, width_ != 0 && (w != width_ || h != height_)};
    width_ = w;
    height_ = h;
    const int slot = ring.acquire(w, h);
    try {
      const uint8_t* planes[3] = {image->planes[VPX_PLANE_Y], image->planes[VPX_PLANE_U], image->planes[VPX_PLANE_V]};
      const int strides[3] = {image->stride[VPX_PLANE_Y], image->stride[VPX_PLANE_U], image->stride[VPX_PLANE_V]};
      i420_to_rgb(tj_.get(), planes, strides, w, h, scratch_.data(), ring.slot_data(slot));
    } catch (...) {
      ring.abort(slot);
      throw;
    }
    if (ring.commit(slot, capture_ns, arrival_ns, key) < 0) result.kind = DecodeResult::Kind::Nothing;
    return result;
  }

 private:
  void need_reference() {
    have_reference_ = false;
    awaiting_keyframe_ = true;
  }

  UniqueTjHandle tj_;
  vpx_codec_ctx_t ctx_{};
  bool open_ = false;
  std::vector<uint8_t> scratch_;
  bool have_reference_ = false;
  bool awaiting_keyframe_ = false;
  int64_t width_ = 0;
  int64_t height_ = 0;
};

class JpegDecoder final : public PacketDecoder {
 public:
  JpegDecoder() : tj_(tjInitDecompress()) {
    RE_CHECK(tj_ != nullptr, DecodeError, "tjInitDecompress failed: ", tjGetErrorStr2(nullptr));
  }
  InputCodec kind() const override { return InputCodec::Jpeg; }
  void reset() override { width_ = height_ = 0; }

  DecodeResult decode(const uint8_t* data, size_t size, int64_t capture_ns, int64_t arrival_ns,
                      InputRing& ring) override {
    int w = 0, h = 0, subsampling = 0, colorspace = 0;
    if (tjDecompressHeader3(tj_.get(), data, static_cast<unsigned long>(size), &w, &h, &subsampling, &colorspace) !=
        0) {
      RE_THROW(DecodeError, "corrupt JPEG of ", size, " bytes: ", tjGetErrorStr2(tj_.get()));
    }
    RE_CHECK(w > 0 && h > 0, DecodeError, "corrupt JPEG of ", size, " bytes: no image size in its header");
    ring.check_size(w, h);
    DecodeResult result{DecodeResult::Kind::Frame, true, width_ != 0 && (w != width_ || h != height_)};
    width_ = w;
    height_ = h;
    const int slot = ring.acquire(w, h);
    // A warning (say, a truncated file) still fails the frame: half of it would be grey.
    if (tjDecompress2(tj_.get(), data, static_cast<unsigned long>(size), ring.slot_data(slot), w, w * 3, h, TJPF_RGB,
                      0) != 0) {
      ring.abort(slot);
      RE_THROW(DecodeError, "corrupt JPEG of ", size, " bytes (", w, "x", h, "): ", tjGetErrorStr2(tj_.get()));
    }
    if (ring.commit(slot, capture_ns, arrival_ns, true) < 0) result.kind = DecodeResult::Kind::Nothing;
    return result;
  }

 private:
  UniqueTjHandle tj_;
  int64_t width_ = 0;
  int64_t height_ = 0;
};

}  // namespace

InputCodec parse_input_codec(const std::string& name) {
  if (name == "vp8") return InputCodec::Vp8;
  if (name == "jpeg") return InputCodec::Jpeg;
  RE_THROW(InvalidArgument, "unknown input codec '", name, "'; expected 'vp8' or 'jpeg'");
}

const char* input_codec_name(InputCodec codec) {
  switch (codec) {
    case InputCodec::Vp8: return "vp8";
    case InputCodec::Jpeg: return "jpeg";
  }
  return "unknown";
}

size_t i420_scratch_bytes(int64_t max_width, int64_t max_height) {
  const int64_t w = even(max_width), h = even(max_height);
  return static_cast<size_t>(w * h + 2 * (w / 2) * (h / 2));
}

void i420_to_rgb(void* tj, const uint8_t* const planes[3], const int strides[3], int64_t width, int64_t height,
                 uint8_t* scratch, uint8_t* rgb) {
  // libvpx's frame buffers are padded (aligned sizes plus a border), so the even-padded row and
  // column read here lie inside them.
  const int64_t w = even(width), h = even(height), cw = w / 2, ch = h / 2;
  uint8_t* y = scratch;
  uint8_t* u = y + w * h;
  uint8_t* v = u + cw * ch;
  expand_plane(planes[0], strides[0], y, w, w, h, 16, 235, 298);
  expand_plane(planes[1], strides[1], u, cw, cw, ch, 16, 240, 291);
  expand_plane(planes[2], strides[2], v, cw, cw, ch, 16, 240, 291);
  const unsigned char* full[3] = {y, u, v};
  const int full_strides[3] = {static_cast<int>(w), static_cast<int>(cw), static_cast<int>(cw)};
  const int rc = tjDecodeYUVPlanes(tj, full, full_strides, TJSAMP_420, rgb, static_cast<int>(width),
                                   static_cast<int>(width * 3), static_cast<int>(height), TJPF_RGB, 0);
  RE_CHECK(rc == 0, DecodeError, "I420 to RGB conversion of a ", width, "x", height,
           " frame failed: ", tjGetErrorStr2(tj));
}

std::unique_ptr<PacketDecoder> make_packet_decoder(InputCodec codec, int64_t max_width, int64_t max_height) {
  switch (codec) {
    case InputCodec::Vp8: return std::make_unique<Vp8Decoder>(max_width, max_height);
    case InputCodec::Jpeg: return std::make_unique<JpegDecoder>();
  }
  RE_THROW(InvalidArgument, "unknown input codec");
}

}  // namespace reactor
