// Frame codecs of the encoder thread: raw RGB24, I420 and JPEG through libjpeg-turbo's TurboJPEG API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/PacketQueue.h"

namespace reactor {

enum class Subsampling { S444, S422, S420, Gray };
Subsampling parse_subsampling(const std::string& name);
const char* subsampling_name(Subsampling subsampling);
CodecKind parse_codec(const std::string& name);

// Note: a codec instance belongs to the encoder thread alone; it holds its TurboJPEG handle and
// writes into the caller's preallocated buffer (TJFLAG_NOREALLOC), so encoding never allocates.
class FrameCodec {
 public:
  virtual ~FrameCodec() = default;
  virtual CodecKind kind() const = 0;
  // The largest output for any frame of at most max_width x max_height.
  virtual size_t max_bytes(int64_t max_width, int64_t max_height) const = 0;
  // Encodes a packed RGB24 frame into dst (capacity bytes); returns the bytes written.
  virtual size_t encode(const uint8_t* rgb, int64_t width, int64_t height, uint8_t* dst, size_t capacity) = 0;
};

struct CodecOptions {
  CodecKind kind = CodecKind::Jpeg;
  int quality = 90;
  Subsampling subsampling = Subsampling::S420;
};

std::unique_ptr<FrameCodec> make_codec(const CodecOptions& options);

}  // namespace reactor
