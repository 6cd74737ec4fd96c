// The device status line and the availability check behind it.
#include "kernels/CudaRuntime.h"

#include "kernels/Rgb24Kernel.h"

#ifndef REACTOR_CUDA_ARCHS
#define REACTOR_CUDA_ARCHS "?"
#endif

namespace reactor::cuda {
namespace {

std::string error_text(cudaError_t status) {
  // Note: a failed query leaves its error as the thread's "last error"; clear it so that the
  // cudaGetLastError after a later kernel launch reports that launch and not this query.
  cudaGetLastError();
  return std::string(cudaGetErrorString(status)) + " (" + cudaGetErrorName(status) + ")";
}

std::string version_text(int version) {  // 13000 → "13.0"
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

}  // namespace

std::string unavailable_reason(int device) {
  int count = 0;
  if (const cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess) {
    // The runtime reports a missing driver as an insufficient one; say which it is.
    int driver = 0;
    if (status == cudaErrorInsufficientDriver && cudaDriverGetVersion(&driver) == cudaSuccess) {
      int runtime = 0;
      cudaRuntimeGetVersion(&runtime);
      cudaGetLastError();
      if (driver == 0) return "no NVIDIA driver (libcuda.so.1 not found)";
      return "the NVIDIA driver supports CUDA " + version_text(driver) + "; this build's runtime needs " +
             version_text(runtime) + " (update the driver)";
    }
    return error_text(status);
  }
  if (count == 0) return "no CUDA device";
  if (device < 0 || device >= count) {
    return "device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " device(s))";
  }
  int previous = 0;
  if (const cudaError_t status = cudaGetDevice(&previous); status != cudaSuccess) return error_text(status);
  if (const cudaError_t status = cudaSetDevice(device); status != cudaSuccess) return error_text(status);
  const cudaError_t image = rgb24_kernel_image_status();
  cudaSetDevice(previous);
  if (image != cudaSuccess) {
    cudaDeviceProp props{};
    cudaGetDeviceProperties(&props, device);
    return std::string(props.name) + " (compute " + std::to_string(props.major) + "." + std::to_string(props.minor) +
           ") cannot run this build's kernels (built for " REACTOR_CUDA_ARCHS
           "; rebuild with REACTOR_ENGINE_CUDA_ARCHITECTURES): " +
           error_text(image);
  }
  return {};
}

std::string cuda_status() {
  if (std::string why = unavailable_reason(0); !why.empty()) return "unavailable: " + why;
  cudaDeviceProp props{};
  if (const cudaError_t status = cudaGetDeviceProperties(&props, 0); status != cudaSuccess) {
    return "unavailable: " + error_text(status);
  }
  int driver = 0;
  int runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  return "available: " + std::string(props.name) + ", compute " + std::to_string(props.major) + "." +
         std::to_string(props.minor) + ", driver " + version_text(driver) + ", runtime " + version_text(runtime);
}

}  // namespace reactor::cuda
