// Codec implementations: raw, I420 (I420.h), JPEG (JpegEncoder.h), and the TurboJPEG handle owner VP8 uses.
#include "core/Codec.h"

#include <turbojpeg.h>

#include <cstring>

#include "core/Error.h"
#include "core/I420.h"
#include "core/JpegStripes.h"
#include "core/Vp8Codec.h"

namespace reactor {

void TjDeleter::operator()(void* handle) const {
  if (handle != nullptr) tjDestroy(handle);
}

UniqueTjHandle make_tj_compressor() {
  UniqueTjHandle handle(tjInitCompress());
  RE_CHECK(handle != nullptr, EncodeError, "tjInitCompress failed: ", tjGetErrorStr2(nullptr));
  return handle;
}

void check_bitrate(int64_t bps) {
  RE_CHECK(bps >= kMinBitrateBps && bps <= kMaxBitrateBps, InvalidArgument, "bitrate must be between ", kMinBitrateBps,
           " and ", kMaxBitrateBps, " bits per second, got ", bps);
}

namespace {

class RawCodec final : public FrameCodec {
 public:
  CodecKind kind() const override { return CodecKind::Raw; }
  size_t max_bytes(int64_t w, int64_t h) const override { return static_cast<size_t>(w * h * 3); }
  EncodedFrame encode(const uint8_t* rgb, int64_t w, int64_t h, const FrameControl&, uint8_t* dst,
                      size_t capacity) override {
    const size_t bytes = static_cast<size_t>(w * h * 3);
    RE_CHECK(bytes <= capacity, EncodeError, "raw frame of ", bytes, " bytes exceeds the packet buffer of ", capacity);
    std::memcpy(dst, rgb, bytes);
    return {bytes, true};
  }
};

// Planar Y, U, V at 4:2:0 in JPEG's full range with no row padding: w*h*3/2 bytes for even sizes
// (an odd width or height pads the luma plane to the next even size, as libjpeg-turbo lays it out).
class I420Codec final : public FrameCodec {
 public:
  CodecKind kind() const override { return CodecKind::I420; }
  size_t max_bytes(int64_t w, int64_t h) const override { return i420_layout(w, h).packed_bytes(); }
  EncodedFrame encode(const uint8_t* rgb, int64_t w, int64_t h, const FrameControl&, uint8_t* dst,
                      size_t capacity) override {
    const I420Layout layout = i420_layout(w, h);
    const size_t bytes = layout.packed_bytes();
    RE_CHECK(bytes <= capacity, EncodeError, "I420 frame of ", bytes, " bytes exceeds the packet buffer of ", capacity);
    rgb_to_jfif_i420(rgb, w, h, packed_i420_planes(dst, layout));
    return {bytes, true};
  }
};

class JpegCodec final : public FrameCodec {
 public:
  JpegCodec(int quality, Subsampling subsampling, int threads, ThreadPolicy policy)
      : encoder_(quality, subsampling, threads, policy) {}
  CodecKind kind() const override { return CodecKind::Jpeg; }
  size_t max_bytes(int64_t w, int64_t h) const override { return encoder_.max_bytes(w, h); }
  void reserve(int64_t max_width, int64_t max_height) override { encoder_.reserve(max_width, max_height); }
  EncodedFrame encode(const uint8_t* rgb, int64_t w, int64_t h, const FrameControl&, uint8_t* dst,
                      size_t capacity) override {
    return {encoder_.encode(rgb, w, h, dst, capacity), true};
  }

 private:
  StripedJpegEncoder encoder_;
};

}  // namespace

Subsampling parse_subsampling(const std::string& name) {
  if (name == "444") return Subsampling::S444;
  if (name == "422") return Subsampling::S422;
  if (name == "420") return Subsampling::S420;
  if (name == "gray") return Subsampling::Gray;
  RE_THROW(InvalidArgument, "unknown chroma subsampling '", name, "'; expected '444', '422', '420' or 'gray'");
}

const char* subsampling_name(Subsampling subsampling) {
  switch (subsampling) {
    case Subsampling::S444: return "444";
    case Subsampling::S422: return "422";
    case Subsampling::S420: return "420";
    case Subsampling::Gray: return "gray";
  }
  return "unknown";
}

CodecKind parse_codec(const std::string& name) {
  if (name == "raw") return CodecKind::Raw;
  if (name == "i420") return CodecKind::I420;
  if (name == "jpeg") return CodecKind::Jpeg;
  if (name == "vp8") return CodecKind::Vp8;
  RE_THROW(InvalidArgument, "unknown codec '", name,
           "'; expected 'raw', 'i420' or 'jpeg' (images), or 'vp8' (a video stream)");
}

std::unique_ptr<FrameCodec> make_codec(const CodecOptions& options) {
  switch (options.kind) {
    case CodecKind::Raw: return std::make_unique<RawCodec>();
    case CodecKind::I420: return std::make_unique<I420Codec>();
    case CodecKind::Jpeg:
      return std::make_unique<JpegCodec>(options.quality, options.subsampling, options.jpeg_threads,
                                         options.thread_policy);
    case CodecKind::Vp8: return make_vp8_codec(options);
  }
  RE_THROW(InvalidArgument, "unknown codec");
}

}  // namespace reactor
