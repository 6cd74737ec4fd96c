// Packet decoders of the input path: VP8 (libvpx) and JPEG (TurboJPEG) straight into InputRing slots.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/Error.h"
#include "core/InputRing.h"

namespace reactor {

enum class InputCodec : uint8_t { Vp8 = 0, Jpeg = 1 };
InputCodec parse_input_codec(const std::string& name);  // "vp8" | "jpeg"; throws InvalidArgument
const char* input_codec_name(InputCodec codec);

// A payload the decoder cannot use (corrupt, truncated, unsupported); the decoder thread counts it
// in decode_errors and keeps going. It never reaches Python as an exception.
class DecodeError : public Error {
  using Error::Error;
};

struct DecodeResult {
  enum class Kind : uint8_t {
    Frame,      // decoded and committed into the ring
    Discarded,  // a VP8 delta frame with no reference to decode it against (waiting for a key frame)
    Nothing,    // decoded, but no frame to show (or dropped by a ring reset meanwhile)
  };
  Kind kind = Kind::Nothing;
  bool keyframe = false;
  bool resolution_changed = false;  // a decoded size that differs from the previous frame's
};

// Note: one instance belongs to one decoder thread. Buffers are allocated for the ring's max size at
// construction; decode() throws FrameError when a frame does not fit the ring (counted there) and
// DecodeError for a bad payload, after which a VP8 stream waits for its next key frame.
class PacketDecoder {
 public:
  virtual ~PacketDecoder() = default;
  virtual InputCodec kind() const = 0;
  virtual DecodeResult decode(const uint8_t* data, size_t size, int64_t capture_ns, int64_t arrival_ns,
                              InputRing& ring) = 0;
  // Packets were lost before the next one: a VP8 stream needs a key frame.
  virtual void lost() {}
  // True from a loss, an error or a refused frame until a key frame decodes (VP8).
  virtual bool awaiting_keyframe() const { return false; }
  // A new stream (session): no reference frame, no previous size.
  virtual void reset() = 0;
};

std::unique_ptr<PacketDecoder> make_packet_decoder(InputCodec codec, int64_t max_width, int64_t max_height);

// Packed RGB24 <- BT.601 limited-range I420 planes (VP8's), no allocation in our code: scales the
// planes to JPEG's full range into scratch (each at least (w+1)/2*2 x (h+1)/2*2 luma), then
// TurboJPEG's SIMD upsampling and colour conversion. tj: a handle from tjInitDecompress().
void i420_to_rgb(void* tj, const uint8_t* const planes[3], const int strides[3], int64_t width, int64_t height,
                 uint8_t* scratch, uint8_t* rgb);
size_t i420_scratch_bytes(int64_t max_width, int64_t max_height);

}  // namespace reactor
