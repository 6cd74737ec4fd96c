// HostArena: mapping, prefaulting, locking and CUDA registration, each with a reported fallback.
#include "core/HostArena.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/CudaDriver.h"
#include "core/Error.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL and we touch pages instead
#endif

namespace reactor {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

std::string errno_name(int err) {
  switch (err) {
    case ENOMEM: return "ENOMEM";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    default: return std::strerror(err);
  }
}

std::string memlock_limit_text() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "memlock limit unknown";
  if (limit.rlim_cur == RLIM_INFINITY) return "memlock limit unlimited";
  const auto bytes = static_cast<unsigned long long>(limit.rlim_cur);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) {
    return "memlock limit " + std::to_string(bytes >> 20) + " MiB";
  }
  return "memlock limit " + std::to_string(bytes) + " bytes";
}

}  // namespace

HostArena::HostArena(int64_t nbytes, ArenaOptions options) {
  RE_CHECK(nbytes > 0, InvalidArgument, "arena size must be a positive number of bytes, got ", nbytes);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_ = round_up(static_cast<size_t>(nbytes), page);

  // Large regions are aligned to 2 MiB so that transparent huge pages can back them.
  const bool align_huge = options.hugepages && size_ >= kHugePage;
  mapping_size_ = align_huge ? size_ + kHugePage : size_;
  void* mapped = mmap(nullptr, mapping_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  RE_CHECK(mapped != MAP_FAILED, AllocationError, "mmap of ", mapping_size_, " bytes failed: ", std::strerror(errno));
  mapping_ = static_cast<uint8_t*>(mapped);
  data_ = mapping_;
  if (align_huge) {
    const auto address = reinterpret_cast<uintptr_t>(mapping_);
    data_ = reinterpret_cast<uint8_t*>(round_up(address, kHugePage));
  }

  if (!options.hugepages) {
    hugepages_ = "disabled";
  } else if (madvise(data_, size_, MADV_HUGEPAGE) == 0) {
    hugepages_ = "MADV_HUGEPAGE";
  } else {
    hugepages_ = "none: madvise " + errno_name(errno);
  }

  // Prefault now so the frame loop never takes a page fault.
  if (madvise(data_, size_, MADV_POPULATE_WRITE) != 0) {
    for (size_t offset = 0; offset < size_; offset += page) data_[offset] = 0;
  }

  std::string lock_reason = "locking not requested";
  if (options.lock) {
    if (mlock(data_, size_) == 0) {
      locked_ = true;
    } else {
      const int err = errno;
      lock_reason = "mlock " + errno_name(err) + " (" + memlock_limit_text() + ")";
    }
  }

  if (!options.cuda_register) {
    cuda_ = "disabled";
  } else {
    const std::string failure = CudaDriver::instance().host_register(data_, size_);
    cuda_registered_ = failure.empty();
    cuda_ = cuda_registered_                       ? "registered"
            : failure.rfind("unavailable", 0) == 0 ? failure
                                                   : "unavailable: " + failure;
  }

  pinning_ = cuda_registered_ ? "cuda" : locked_ ? "mlock" : "none: " + lock_reason;
}

HostArena::~HostArena() {
  if (cuda_registered_) CudaDriver::instance().host_unregister(data_);
  if (locked_) munlock(data_, size_);
  munmap(mapping_, mapping_size_);
}

size_t HostArena::used() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return used_;
}

size_t HostArena::allocate(int64_t nbytes, int64_t alignment) {
  RE_CHECK(nbytes > 0, InvalidArgument, "allocation size must be positive, got ", nbytes);
  RE_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, InvalidArgument,
           "alignment must be a positive power of two, got ", alignment);
  std::lock_guard<std::mutex> guard(mutex_);
  const size_t offset = round_up(used_, static_cast<size_t>(alignment));
  RE_CHECK(offset <= size_ && static_cast<size_t>(nbytes) <= size_ - offset, AllocationError, "arena of ", size_,
           " bytes has ", size_ - std::min(offset, size_), " bytes free at alignment ", alignment, "; asked for ",
           nbytes);
  used_ = offset + static_cast<size_t>(nbytes);
  return offset;
}

uint8_t* HostArena::at(int64_t offset, int64_t nbytes) const {
  RE_CHECK(offset >= 0 && nbytes >= 0 && static_cast<size_t>(offset) <= size_ &&
               static_cast<size_t>(nbytes) <= size_ - static_cast<size_t>(offset),
           InvalidArgument, "range [", offset, ", ", offset + nbytes, ") is outside the arena of ", size_, " bytes");
  return data_ + offset;
}

}  // namespace reactor
