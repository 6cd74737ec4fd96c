// HostArena: one page-aligned, prefaulted host region, pinned as far as the machine permits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace reactor {

struct ArenaOptions {
  bool lock = true;           // mlock the region (falls back, reporting why)
  bool cuda_register = true;  // cuMemHostRegister when a driver exists
  bool hugepages = true;      // madvise(MADV_HUGEPAGE)
};

// Note: the region is mapped, advised, prefaulted, locked and registered in the constructor, so
// nothing after it faults or allocates. Every step that the machine refuses is recorded with its
// reason and the arena still works as plain memory. Owned through std::shared_ptr: rings, views
// and tensors over it keep it mapped.
class HostArena {
 public:
  HostArena(int64_t nbytes, ArenaOptions options);
  ~HostArena();
  HostArena(const HostArena&) = delete;
  HostArena& operator=(const HostArena&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t used() const;

  // Carves nbytes at alignment (a power of two); returns the offset. Thread-safe.
  size_t allocate(int64_t nbytes, int64_t alignment = 64);
  // Checks that [offset, offset + nbytes) lies inside the region; returns its address.
  uint8_t* at(int64_t offset, int64_t nbytes) const;

  // "cuda", "mlock" or "none: <why>".
  const std::string& pinning() const { return pinning_; }
  bool locked() const { return locked_; }
  bool cuda_registered() const { return cuda_registered_; }
  // "registered", "disabled" or "unavailable: <why>".
  const std::string& cuda() const { return cuda_; }
  // "MADV_HUGEPAGE", "disabled" or "none: <why>".
  const std::string& hugepages() const { return hugepages_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint8_t* mapping_ = nullptr;  // what munmap gets (may start before data_ for 2 MiB alignment)
  size_t mapping_size_ = 0;
  bool locked_ = false;
  bool cuda_registered_ = false;
  std::string pinning_, cuda_, hugepages_;
  mutable std::mutex mutex_;
  size_t used_ = 0;
};

}  // namespace reactor
