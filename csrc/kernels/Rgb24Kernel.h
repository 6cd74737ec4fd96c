// Launch of the device-frame → packed RGB24 kernel (host-callable; the kernel is in Rgb24Kernel.cu).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/FrameFormat.h"

namespace reactor::cuda {

// Enqueues on `stream` the conversion of the C-contiguous frame at `src` (3 channels, width×height,
// in `layout`) into `dst`: width×height×3 bytes, packed HWC. Floats map to bytes as
//   v = (x + offset) * scale   in float32 (0_1: offset 0, scale 255; -1_1: offset 1, scale 127.5)
//   v = clamp(v, 0, 255), NaN → 0, then round half to even (numpy's np.rint).
// float16 is widened to float32 first (exactly). Returns the launch status; never throws.
cudaError_t launch_rgb24(const void* src, DType dtype, Layout layout, ValueRange range, int width, int height,
                         uint8_t* dst, cudaStream_t stream);

// cudaSuccess when the current device has a kernel image this build can run, else why not.
cudaError_t rgb24_kernel_image_status();

}  // namespace reactor::cuda
