// The device-frame → packed RGB24 kernel: uint8/float16/float32, HWC/CHW, one thread per pixel.
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/Rgb24Kernel.h"

namespace reactor::cuda {
namespace {

constexpr int kThreadsPerBlock = 256;
// Enough blocks to fill an H200 several times over; larger frames loop (grid-stride).
constexpr unsigned kMaxBlocks = 8192;

struct FloatMap {
  float offset;
  float scale;
};

__device__ __forceinline__ uint8_t to_byte(uint8_t x, FloatMap) { return x; }

__device__ __forceinline__ uint8_t to_byte(float x, FloatMap map) {
  // Note: the _rn intrinsics forbid contracting the add and multiply into an FMA, so each step
  // rounds exactly as numpy's float32 arithmetic does and a CPU reference can match bit for bit.
  const float v = __fmul_rn(__fadd_rn(x, map.offset), map.scale);
  // fmaxf returns the non-NaN operand, so NaN maps to 0; ±inf clamp to 0 / 255.
  return static_cast<uint8_t>(__float2uint_rn(fminf(fmaxf(v, 0.0f), 255.0f)));
}

__device__ __forceinline__ uint8_t to_byte(__half x, FloatMap map) { return to_byte(__half2float(x), map); }

template <typename T, Layout kLayout>
__global__ void rgb24_kernel(const T* __restrict__ src, uint8_t* __restrict__ dst, size_t pixels, FloatMap map) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pixels; i += stride) {
    for (int c = 0; c < 3; ++c) {
      const T x = kLayout == Layout::kHWC ? src[i * 3 + c] : src[c * pixels + i];
      dst[i * 3 + c] = to_byte(x, map);
    }
  }
}

template <typename T>
cudaError_t launch_typed(const void* src, Layout layout, FloatMap map, size_t pixels, uint8_t* dst,
                         cudaStream_t stream) {
  const unsigned blocks =
      static_cast<unsigned>(std::min<size_t>((pixels + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks));
  const T* typed = static_cast<const T*>(src);
  if (layout == Layout::kHWC) {
    rgb24_kernel<T, Layout::kHWC><<<blocks, kThreadsPerBlock, 0, stream>>>(typed, dst, pixels, map);
  } else {
    rgb24_kernel<T, Layout::kCHW><<<blocks, kThreadsPerBlock, 0, stream>>>(typed, dst, pixels, map);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_rgb24(const void* src, DType dtype, Layout layout, ValueRange range, int width, int height,
                         uint8_t* dst, cudaStream_t stream) {
  const size_t pixels = static_cast<size_t>(width) * static_cast<size_t>(height);
  const FloatMap map = range == ValueRange::kMinus1To1 ? FloatMap{1.0f, 127.5f} : FloatMap{0.0f, 255.0f};
  switch (dtype) {
    case DType::kUint8: return launch_typed<uint8_t>(src, layout, map, pixels, dst, stream);
    case DType::kFloat16: return launch_typed<__half>(src, layout, map, pixels, dst, stream);
    case DType::kFloat32: return launch_typed<float>(src, layout, map, pixels, dst, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t rgb24_kernel_image_status() {
  // Every instantiation lives in the same fatbinary, so one stands for all.
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, rgb24_kernel<uint8_t, Layout::kHWC>);
}

}  // namespace reactor::cuda
