// Rgb24Converter: a device frame → packed RGB24 in host memory, on its own stream, allocation-free per call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>

#include "kernels/FrameFormat.h"

namespace reactor::cuda {

// Deleters for the CUDA handles this class owns. They run in destructors, so they ignore errors:
// at interpreter exit the static runtime may already be unloading (cudaErrorCudartUnloading).
struct StreamDeleter {
  void operator()(cudaStream_t stream) const { cudaStreamDestroy(stream); }
};
struct EventDeleter {
  void operator()(cudaEvent_t event) const { cudaEventDestroy(event); }
};
struct DeviceMemoryDeleter {
  void operator()(void* ptr) const { cudaFree(ptr); }
};
using UniqueStream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDeleter>;
using UniqueEvent = std::unique_ptr<std::remove_pointer_t<cudaEvent_t>, EventDeleter>;
using UniqueDeviceMemory = std::unique_ptr<void, DeviceMemoryDeleter>;

// Note: everything is created in the constructor (stream, events, a device scratch of
// max_width × max_height × 3 bytes), so convert() allocates nothing. The converter is bound to one
// device; convert() makes it current for the call and restores the caller's device afterwards.
// Thread-safe: calls are serialized on the one scratch buffer (the bindings call with the GIL
// released, so two Python threads may arrive together).
class Rgb24Converter {
 public:
  // Throws reactor::InvalidArgument for sizes outside [1, kMaxSide], reactor::CudaError when the
  // device is unavailable (the message says why) or a CUDA call fails.
  Rgb24Converter(int max_width, int max_height, int device = 0);

  static constexpr int kMaxSide = 16384;

  int max_width() const { return max_width_; }
  int max_height() const { return max_height_; }
  int device() const { return device_; }

  // Converts the C-contiguous 3-channel frame at src (device memory on this converter's device)
  // into width × height × 3 packed bytes at dst_host (pinned for an asynchronous copy; pageable
  // works, slower). Work on this converter's stream starts after everything already queued on
  // producer_stream (0: the legacy default stream); returns once dst_host holds the frame.
  // Throws reactor::InvalidArgument / reactor::FrameError for bad arguments (before any CUDA
  // work) and reactor::CudaError when a CUDA call fails.
  void convert(const void* src, DType dtype, Layout layout, ValueRange range, int width, int height, void* dst_host,
               size_t dst_bytes, cudaStream_t producer_stream);

 private:
  void check_source(const void* src, DType dtype) const;

  int max_width_;
  int max_height_;
  int device_;
  UniqueStream stream_;
  UniqueEvent producer_ready_;  // recorded on the producer's stream, waited on by stream_
  UniqueEvent copied_;          // recorded on stream_ after the D2H copy; the host waits on it
  UniqueDeviceMemory scratch_;  // max_width × max_height × 3 bytes of packed RGB24
  std::mutex mutex_;
};

}  // namespace reactor::cuda
