// Rgb24Converter: stream/event ordering, argument checks and the D2H copy around the RGB24 kernel.
#include "kernels/Rgb24Converter.h"

#include "kernels/CudaRuntime.h"
#include "kernels/Rgb24Kernel.h"

namespace reactor::cuda {
namespace {

// Makes `device` current for a scope and restores the caller's device, so a converter bound to
// device 0 does not change what the calling thread (or torch on it) sees as its current device.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    RE_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) RE_CUDA_CHECK(cudaSetDevice(device));
    changed_ = previous_ != device;
  }
  ~DeviceScope() {
    if (changed_) cudaSetDevice(previous_);  // a destructor must not throw; the device exists
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

const char* memory_type_name(cudaMemoryType type) {
  switch (type) {
    case cudaMemoryTypeUnregistered: return "unregistered host memory";
    case cudaMemoryTypeHost: return "pinned host memory";
    case cudaMemoryTypeDevice: return "device memory";
    case cudaMemoryTypeManaged: return "managed memory";
  }
  return "memory of an unknown type";
}

}  // namespace

Rgb24Converter::Rgb24Converter(int max_width, int max_height, int device)
    : max_width_(max_width), max_height_(max_height), device_(device) {
  RE_CHECK(max_width >= 1 && max_width <= kMaxSide && max_height >= 1 && max_height <= kMaxSide, InvalidArgument,
           "CudaConverter size ", max_width, "x", max_height, " is out of range; max_width and max_height take 1..",
           kMaxSide);
  if (const std::string why = unavailable_reason(device); !why.empty()) {
    RE_THROW(CudaError, "CUDA is unavailable: ", why);
  }
  const DeviceScope scope(device_);
  cudaStream_t stream = nullptr;
  // Non-blocking: the engine's stream never serializes with the legacy default stream; ordering
  // with the producer comes only from the event in convert().
  RE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_.reset(stream);
  cudaEvent_t event = nullptr;
  RE_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  producer_ready_.reset(event);
  // Blocking sync: the host thread sleeps while the copy runs instead of spinning on a core that
  // the encoder thread and the Python threads need.
  RE_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming | cudaEventBlockingSync));
  copied_.reset(event);
  void* scratch = nullptr;
  RE_CUDA_CHECK(cudaMalloc(&scratch, static_cast<size_t>(max_width) * static_cast<size_t>(max_height) * 3));
  scratch_.reset(scratch);
}

void Rgb24Converter::check_source(const void* src, DType dtype) const {
  RE_CHECK(src != nullptr, InvalidArgument, "src_ptr is null; pass a CUDA tensor's data_ptr()");
  RE_CHECK(reinterpret_cast<uintptr_t>(src) % element_size(dtype) == 0, InvalidArgument, "src_ptr ", src,
           " is not aligned to ", element_size(dtype), " bytes, as ", name(dtype), " needs");
  // Note: a kernel reading host memory or another device's memory would raise an illegal-address
  // error, which poisons the CUDA context for the whole process; refuse such pointers up front.
  cudaPointerAttributes attributes{};
  RE_CUDA_CHECK(cudaPointerGetAttributes(&attributes, src));
  RE_CHECK(attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged, InvalidArgument,
           "src_ptr ", src, " points to ", memory_type_name(attributes.type),
           "; CudaConverter reads device memory (a CUDA tensor's data_ptr())");
  RE_CHECK(attributes.type == cudaMemoryTypeManaged || attributes.device == device_, InvalidArgument, "src_ptr ", src,
           " is on CUDA device ", attributes.device, "; this CudaConverter runs on device ", device_);
}

void Rgb24Converter::convert(const void* src, DType dtype, Layout layout, ValueRange range, int width, int height,
                             void* dst_host, size_t dst_bytes, cudaStream_t producer_stream) {
  RE_CHECK((dtype == DType::kUint8) == (range == ValueRange::k0To255), InvalidArgument, name(dtype),
           " frames do not take value_range '", name(range), "'; ",
           dtype == DType::kUint8 ? "uint8 takes '0_255'" : "float16 and float32 take '0_1' or '-1_1'");
  RE_CHECK(width >= 1 && width <= max_width_ && height >= 1 && height <= max_height_, FrameError, "frame is ", width,
           "x", height, "; this CudaConverter takes 1x1 up to ", max_width_, "x", max_height_);
  const size_t nbytes = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  RE_CHECK(dst_host != nullptr, InvalidArgument, "dst is null");
  RE_CHECK(dst_bytes >= nbytes, FrameError, "dst holds ", dst_bytes, " bytes; a ", width, "x", height,
           " RGB24 frame needs ", nbytes);

  const std::lock_guard<std::mutex> lock(mutex_);
  const DeviceScope scope(device_);
  check_source(src, dtype);
  auto* scratch = static_cast<uint8_t*>(scratch_.get());
  RE_CUDA_CHECK(cudaEventRecord(producer_ready_.get(), producer_stream));
  RE_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), producer_ready_.get(), 0));
  RE_CUDA_CHECK(launch_rgb24(src, dtype, layout, range, width, height, scratch, stream_.get()));
  RE_CUDA_CHECK(cudaMemcpyAsync(dst_host, scratch, nbytes, cudaMemcpyDeviceToHost, stream_.get()));
  RE_CUDA_CHECK(cudaEventRecord(copied_.get(), stream_.get()));
  RE_CUDA_CHECK(cudaEventSynchronize(copied_.get()));
}

}  // namespace reactor::cuda
