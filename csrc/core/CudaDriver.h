// The CUDA driver API, loaded at run time with dlopen("libcuda.so.1"), for pinning host memory.
#pragma once

#include <cstddef>
#include <string>

namespace reactor {

// Note: loaded lazily and once per process, never unloaded (the driver keeps process-wide state).
// The module links no CUDA library, so it imports and runs on machines with no driver at all.
class CudaDriver {
 public:
  static const CudaDriver& instance();

  bool available() const { return available_; }
  // "available: <n> device(s)" or "unavailable: <why>".
  const std::string& status() const { return status_; }

  // Page-locks [ptr, ptr + nbytes) for every CUDA context. Returns "" on success, else the reason.
  std::string host_register(void* ptr, size_t nbytes) const;
  void host_unregister(void* ptr) const;

 private:
  CudaDriver();

  using Result = int;
  using InitFn = Result (*)(unsigned);
  using DeviceGetCountFn = Result (*)(int*);
  using DeviceGetFn = Result (*)(int*, int);
  using PrimaryCtxRetainFn = Result (*)(void**, int);
  using CtxPushFn = Result (*)(void*);
  using CtxPopFn = Result (*)(void**);
  using HostRegisterFn = Result (*)(void*, size_t, unsigned);
  using HostUnregisterFn = Result (*)(void*);
  using GetErrorStringFn = Result (*)(Result, const char**);

  std::string error_text(Result code) const;

  bool available_ = false;
  std::string status_;
  void* context_ = nullptr;  // device 0's primary context, retained for the process lifetime
  CtxPushFn ctx_push_ = nullptr;
  CtxPopFn ctx_pop_ = nullptr;
  HostRegisterFn host_register_ = nullptr;
  HostUnregisterFn host_unregister_ = nullptr;
  GetErrorStringFn get_error_string_ = nullptr;
};

}  // namespace reactor
