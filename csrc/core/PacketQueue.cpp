// PacketQueue: pool and FIFO under one mutex, with an eventfd wake-up for asyncio consumers.
#include "core/PacketQueue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/Error.h"

namespace reactor {

namespace {
constexpr int64_t kMaxCapacity = 4096;
constexpr size_t kBufferAlignment = 64;
}  // namespace

const char* codec_name(CodecKind codec) {
  switch (codec) {
    case CodecKind::Raw: return "raw";
    case CodecKind::I420: return "i420";
    case CodecKind::Jpeg: return "jpeg";
    case CodecKind::Vp8: return "vp8";
  }
  return "unknown";
}

PacketQueue::PacketQueue(int64_t capacity, int64_t max_packet_bytes) : capacity_(capacity) {
  RE_CHECK(capacity > 0 && capacity <= kMaxCapacity, InvalidArgument, "packet queue capacity must be between 1 and ",
           kMaxCapacity, ", got ", capacity);
  RE_CHECK(max_packet_bytes > 0, InvalidArgument, "max packet size must be positive, got ", max_packet_bytes);
  max_packet_bytes_ = static_cast<size_t>(max_packet_bytes);
  const size_t stride = (max_packet_bytes_ + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
  // Packet buffers are prefaulted but not locked: they are read by Python, never by a GPU.
  arena_ = std::make_shared<HostArena>(static_cast<int64_t>(stride * static_cast<size_t>(capacity)),
                                       ArenaOptions{false, false, true});
  buffers_.resize(capacity);
  metas_.resize(capacity);
  free_.resize(capacity);
  fifo_.assign(capacity, -1);
  for (int i = 0; i < capacity; ++i) {
    buffers_[i] = arena_->data() + stride * static_cast<size_t>(i);
    free_[i] = static_cast<int>(capacity) - 1 - i;
  }
  free_size_ = static_cast<int>(capacity);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  RE_CHECK(event_fd_ >= 0, Error, "eventfd failed: ", std::strerror(errno));
}

PacketQueue::~PacketQueue() {
  if (event_fd_ >= 0) ::close(event_fd_);
}

int PacketQueue::acquire_buffer(const std::atomic<bool>& cancel, const std::atomic<bool>* enabled) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto stop = [&] { return closed_ || cancel.load() || (enabled != nullptr && !enabled->load()); };
  pool_cv_.wait(lock, [&] { return free_size_ > 0 || stop(); });
  if (stop()) return -1;
  return free_[--free_size_];
}

int PacketQueue::try_acquire_buffer() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_ || free_size_ == 0) return -1;
  return free_[--free_size_];
}

void PacketQueue::publish(int index) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fifo_[(fifo_head_ + fifo_size_) % static_cast<int>(capacity_)] = index;
    ++fifo_size_;
  }
  fifo_cv_.notify_one();
  const uint64_t one = 1;
  // The counter saturating (EAGAIN) still leaves the fd readable, which is all a reader needs.
  [[maybe_unused]] ssize_t written = ::write(event_fd_, &one, sizeof(one));
}

void PacketQueue::discard(int index) { release(index); }

void PacketQueue::wake_producer() {
  std::lock_guard<std::mutex> lock(mutex_);
  pool_cv_.notify_all();
}

int PacketQueue::pop_locked() {
  const int index = fifo_[fifo_head_];
  fifo_head_ = (fifo_head_ + 1) % static_cast<int>(capacity_);
  --fifo_size_;
  return index;
}

int PacketQueue::pop(int64_t timeout_ns) {
  if (stash_) stash_->rethrow_if_set();
  std::unique_lock<std::mutex> lock(mutex_);
  auto ready = [&] { return fifo_size_ > 0 || closed_; };
  if (timeout_ns < 0) {
    fifo_cv_.wait(lock, ready);
  } else if (!fifo_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), ready)) {
    return -1;
  }
  if (fifo_size_ > 0) return pop_locked();
  RE_THROW(Closed, "the packet queue is closed");
}

int PacketQueue::try_pop() {
  if (stash_) stash_->rethrow_if_set();
  std::lock_guard<std::mutex> lock(mutex_);
  if (fifo_size_ > 0) return pop_locked();
  RE_CHECK(!closed_, Closed, "the packet queue is closed");
  return -1;
}

void PacketQueue::release(int index) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    free_[free_size_++] = index;
  }
  pool_cv_.notify_one();
}

void PacketQueue::clear_event() {
  uint64_t value = 0;
  [[maybe_unused]] ssize_t got = ::read(event_fd_, &value, sizeof(value));
}

void PacketQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  pool_cv_.notify_all();
  fifo_cv_.notify_all();
  const uint64_t one = 1;
  // Wake asyncio readers too, so they see the close.
  [[maybe_unused]] ssize_t written = ::write(event_fd_, &one, sizeof(one));
}

bool PacketQueue::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

int64_t PacketQueue::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fifo_size_;
}

}  // namespace reactor
