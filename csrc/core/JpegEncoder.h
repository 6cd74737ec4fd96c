// A persistent libjpeg compressor for RGB24 frames that allocates nothing per frame once reserved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/Codec.h"

namespace reactor {

namespace detail {
struct JpegCompressor;  // libjpeg's objects and our managers (JpegEncoder.cpp): jpeglib.h stays out of here
}  // namespace detail

// Note: the bytes are those of TurboJPEG's tjCompress2(TJPF_RGB, subsampling, quality, flags 0) in
// libjpeg-turbo 2.1 (pinned by test_jpeg_encoder.cpp), but made through the libjpeg API with one
// compress object kept for the encoder's life, libjpeg's memory pools served from blocks that are
// reused frame after frame, and the output written straight into the caller's buffer.
// tjCompress2 made 9 mallocs and 9 frees per frame (its row pointers and libjpeg's per-image pools).
// Owned and used by one thread (the encoder thread); not copyable, as libjpeg points into it.
class JpegEncoder {
 public:
  JpegEncoder(int quality, Subsampling subsampling);
  ~JpegEncoder();
  JpegEncoder(const JpegEncoder&) = delete;
  JpegEncoder& operator=(const JpegEncoder&) = delete;

  // The largest JPEG of a width x height frame (TurboJPEG's bound, which holds for these bytes).
  size_t max_bytes(int64_t width, int64_t height) const;
  // Encodes one frame of max_width x max_height, so that libjpeg's per-image memory is in place:
  // every later frame of at most that size reuses it. A larger frame still encodes (its first
  // encode grows the memory once).
  void reserve(int64_t max_width, int64_t max_height);
  // Encodes a packed RGB24 frame into dst; returns the JPEG's size. Throws EncodeError when the
  // JPEG does not fit in capacity bytes or libjpeg reports an error; the encoder stays usable.
  // restart_mcus > 0 puts a restart marker every that many MCUs (a DRI marker in the header; at most
  // 65535): the stripes of StripedJpegEncoder (JpegStripes.h) are such JPEGs.
  size_t encode(const uint8_t* rgb, int64_t width, int64_t height, uint8_t* dst, size_t capacity,
                int64_t restart_mcus = 0);
  // A frame's MCU: 8 or 16 pixels a side, by subsampling.
  int mcu_width() const;
  int mcu_height() const;

  // The blocks of memory this encoder has taken from malloc so far (a test's view of "no growth").
  int64_t blocks_allocated() const;

 private:
  Subsampling subsampling_;
  std::unique_ptr<detail::JpegCompressor> state_;  // at a fixed address: libjpeg's callbacks reach it by pointer
};

}  // namespace reactor
