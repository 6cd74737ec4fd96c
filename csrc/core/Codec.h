// Frame codecs of the encoder thread: raw RGB24, I420, JPEG (libjpeg-turbo) and VP8 (libvpx).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/PacketQueue.h"
#include "core/ThreadPolicy.h"

namespace reactor {

enum class Subsampling { S444, S422, S420, Gray };
Subsampling parse_subsampling(const std::string& name);
const char* subsampling_name(Subsampling subsampling);
CodecKind parse_codec(const std::string& name);

// The target bitrate a VP8 stream may be given (bits per second), at construction or live.
constexpr int64_t kMinBitrateBps = 10'000;
constexpr int64_t kMaxBitrateBps = 1'000'000'000;
void check_bitrate(int64_t bps);  // throws InvalidArgument outside [kMinBitrateBps, kMaxBitrateBps]

// What the encoder thread tells a codec with each frame; set from any thread through the Encoder's
// atomics and read once per frame, so a change applies from the next frame on.
struct FrameControl {
  bool keyframe = false;    // make this frame a key frame (VP8; every other codec's frames are)
  int64_t bitrate_bps = 0;  // the target in force (VP8)
  int64_t pts_ns = 0;       // the frame's presentation time: VP8's rate control follows it
};

struct EncodedFrame {
  size_t size = 0;  // 0: the codec produced nothing for this frame (nothing is published)
  bool keyframe = true;
};

// Note: a codec instance belongs to the encoder thread alone; it holds its library handles and
// writes into the caller's preallocated buffer (VP8 copies libvpx's packet). reserve() runs once, at
// the encoder's construction; after it raw, I420 and JPEG frames make no libc allocation at all
// (test_steady_state_allocations.cpp counts malloc, not only operator new).
class FrameCodec {
 public:
  virtual ~FrameCodec() = default;
  virtual CodecKind kind() const = 0;
  // The largest output for any frame of at most max_width x max_height.
  virtual size_t max_bytes(int64_t max_width, int64_t max_height) const = 0;
  // Prepares for frames up to max_width x max_height (VP8 opens its encoder at that size here).
  virtual void reserve(int64_t /*max_width*/, int64_t /*max_height*/) {}
  // Encodes a packed RGB24 frame into dst (capacity bytes).
  virtual EncodedFrame encode(const uint8_t* rgb, int64_t width, int64_t height, const FrameControl& control,
                              uint8_t* dst, size_t capacity) = 0;
};

struct CodecOptions {
  CodecKind kind = CodecKind::Jpeg;
  int quality = 90;                                  // JPEG
  Subsampling subsampling = Subsampling::S420;       // JPEG
  int64_t bitrate_bps = 2'000'000;                   // VP8: CBR target
  int vp8_speed = -12;                               // VP8: libvpx cpu-used, -16..16 (see Vp8Codec.h)
  int vp8_threads = 1;                               // VP8: libvpx encoder threads
  int keyframe_interval = 300;                       // VP8: frames between automatic key frames; 0: only on request
  int jpeg_threads = 1;                              // JPEG: threads per frame (StripedJpegEncoder, JpegStripes.h)
  ThreadPolicy thread_policy = ThreadPolicy::Batch;  // the policy of a codec's own threads (the encoder's)
};

std::unique_ptr<FrameCodec> make_codec(const CodecOptions& options);

// TurboJPEG handles (a tjhandle is a void*), owned with tjDestroy as the deleter.
struct TjDeleter {
  void operator()(void* handle) const;
};
using UniqueTjHandle = std::unique_ptr<void, TjDeleter>;
UniqueTjHandle make_tj_compressor();

}  // namespace reactor
