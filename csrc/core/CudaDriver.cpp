// Run-time loading of the CUDA driver API and host-memory registration through it.
#include "core/CudaDriver.h"

#include <dlfcn.h>

namespace reactor {

namespace {
constexpr unsigned kHostRegisterPortable = 0x01;  // CU_MEMHOSTREGISTER_PORTABLE
}

const CudaDriver& CudaDriver::instance() {
  static const CudaDriver driver;  // thread-safe one-time load
  return driver;
}

CudaDriver::CudaDriver() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    status_ = "unavailable: libcuda.so.1 not found (no NVIDIA driver)";
    return;
  }
  auto sym = [&](const char* name) { return dlsym(lib, name); };
  auto init = reinterpret_cast<InitFn>(sym("cuInit"));
  auto get_count = reinterpret_cast<DeviceGetCountFn>(sym("cuDeviceGetCount"));
  auto device_get = reinterpret_cast<DeviceGetFn>(sym("cuDeviceGet"));
  auto retain = reinterpret_cast<PrimaryCtxRetainFn>(sym("cuDevicePrimaryCtxRetain"));
  ctx_push_ = reinterpret_cast<CtxPushFn>(sym("cuCtxPushCurrent_v2"));
  ctx_pop_ = reinterpret_cast<CtxPopFn>(sym("cuCtxPopCurrent_v2"));
  host_register_ = reinterpret_cast<HostRegisterFn>(sym("cuMemHostRegister_v2"));
  host_unregister_ = reinterpret_cast<HostUnregisterFn>(sym("cuMemHostUnregister"));
  get_error_string_ = reinterpret_cast<GetErrorStringFn>(sym("cuGetErrorString"));
  if (!init || !get_count || !device_get || !retain || !ctx_push_ || !ctx_pop_ || !host_register_ ||
      !host_unregister_) {
    status_ = "unavailable: libcuda.so.1 lacks the driver API symbols needed";
    return;
  }
  if (Result r = init(0); r != 0) {
    status_ = "unavailable: cuInit failed: " + error_text(r);
    return;
  }
  int count = 0;
  if (Result r = get_count(&count); r != 0 || count == 0) {
    status_ = r != 0 ? "unavailable: cuDeviceGetCount failed: " + error_text(r) : "unavailable: no CUDA device";
    return;
  }
  int device = 0;
  if (Result r = device_get(&device, 0); r != 0) {
    status_ = "unavailable: cuDeviceGet(0) failed: " + error_text(r);
    return;
  }
  if (Result r = retain(&context_, device); r != 0) {
    status_ = "unavailable: cuDevicePrimaryCtxRetain failed: " + error_text(r);
    return;
  }
  available_ = true;
  status_ = "available: " + std::to_string(count) + " device(s)";
}

std::string CudaDriver::error_text(Result code) const {
  const char* text = nullptr;
  if (get_error_string_ != nullptr && get_error_string_(code, &text) == 0 && text != nullptr) {
    return std::string(text) + " (CUresult " + std::to_string(code) + ")";
  }
  return "CUresult " + std::to_string(code);
}

std::string CudaDriver::host_register(void* ptr, size_t nbytes) const {
  if (!available_) return status_;
  if (Result r = ctx_push_(context_); r != 0) return "cuCtxPushCurrent failed: " + error_text(r);
  const Result r = host_register_(ptr, nbytes, kHostRegisterPortable);
  void* popped = nullptr;
  ctx_pop_(&popped);
  return r == 0 ? std::string() : "cuMemHostRegister failed: " + error_text(r);
}

void CudaDriver::host_unregister(void* ptr) const {
  if (!available_) return;
  if (ctx_push_(context_) != 0) return;
  host_unregister_(ptr);
  void* popped = nullptr;
  ctx_pop_(&popped);
}

}  // namespace reactor
