// The CUDA runtime helpers shared by the kernels' host code: the throwing check and the device status.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "core/Error.h"

// RE_CUDA_CHECK(call): throw reactor::CudaError naming the call, the CUDA error and file:line when
// the call does not return cudaSuccess. Never log-and-return: in a frame loop nothing would act on it.
#define RE_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    if (const cudaError_t re_cuda_status_ = (call); re_cuda_status_ != cudaSuccess) {    \
      RE_THROW(CudaError, #call, " failed: ", ::cudaGetErrorName(re_cuda_status_), " (", \
               ::cudaGetErrorString(re_cuda_status_), ")");                              \
    }                                                                                    \
  } while (0)

namespace reactor::cuda {

// "" when `device` can run this build's kernels, else why not (no driver, no device, a compute
// capability the build has no kernel image for). Never throws.
std::string unavailable_reason(int device);

// "available: <device 0 name>, compute X.Y, driver A.B, runtime C.D" or "unavailable: <reason>".
// Never throws.
std::string cuda_status();

}  // namespace reactor::cuda
