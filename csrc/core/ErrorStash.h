// ErrorStash: where the encoder thread leaves an exception for the next Python-facing call to raise.
#pragma once

#include <atomic>
#include <exception>
#include <mutex>

namespace reactor {

// Note: native threads never let an exception escape (that would std::terminate the process).
// They stash the first one here; the producer's and consumer's next call rethrows it once.
class ErrorStash {
 public:
  void set(std::exception_ptr error) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!error_) error_ = std::move(error);
    pending_.store(true, std::memory_order_release);
  }

  // Rethrows the stashed error, if any, and clears it. One relaxed load when there is none.
  void rethrow_if_set() {
    if (!pending_.load(std::memory_order_acquire)) return;
    std::exception_ptr error;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      error = std::move(error_);
      error_ = nullptr;
      pending_.store(false, std::memory_order_release);
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
  std::atomic<bool> pending_{false};
};

}  // namespace reactor
