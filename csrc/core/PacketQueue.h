// PacketQueue: a bounded pool of preallocated packet buffers and the FIFO of published packets.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/ErrorStash.h"
#include "core/FrameMeta.h"
#include "core/HostArena.h"

namespace reactor {

enum class CodecKind : uint8_t { Raw = 0, I420 = 1, Jpeg = 2, Vp8 = 3 };
const char* codec_name(CodecKind codec);

// A packet carries its frame's metadata unchanged, plus what the encoder adds.
struct PacketMeta : FrameMeta {
  CodecKind codec = CodecKind::Raw;
  bool keyframe = true;  // decodable on its own: every raw, I420 and JPEG packet; VP8 key frames
  int64_t t_encode_start_ns = 0;
  int64_t t_encode_end_ns = 0;
  int64_t t_publish_ns = 0;
  size_t size = 0;
};

// Buffers cycle pool -> encoder (filling) -> FIFO (published) -> consumer (popped) -> pool.
// Note: an eventfd becomes readable on every publish, so an asyncio loop can add_reader it and
// drain with try_pop instead of parking a thread in pop().
class PacketQueue {
 public:
  PacketQueue(int64_t capacity, int64_t max_packet_bytes);
  ~PacketQueue();
  PacketQueue(const PacketQueue&) = delete;
  PacketQueue& operator=(const PacketQueue&) = delete;

  // Producer (encoder thread): a pool buffer, waiting until one is free; -1 on close or cancel,
  // or once *enabled (when given) turns false: a disabled output stops waiting for its consumer.
  int acquire_buffer(const std::atomic<bool>& cancel, const std::atomic<bool>* enabled = nullptr);
  int try_acquire_buffer();  // a pool buffer if one is free now, else -1
  uint8_t* buffer(int index) const { return buffers_[index]; }
  PacketMeta& meta(int index) { return metas_[index]; }
  const PacketMeta& meta(int index) const { return metas_[index]; }
  void publish(int index);
  void discard(int index);  // a buffer that was not filled goes back to the pool
  void wake_producer();

  // Consumer: the oldest packet. pop returns -1 on timeout (timeout_ns < 0 waits without limit)
  // and throws Closed once the queue is closed and empty.
  int pop(int64_t timeout_ns);
  int try_pop();
  void release(int index);  // a popped packet's buffer back to the pool

  int event_fd() const { return event_fd_; }
  void clear_event();
  void close();
  bool closed() const;
  int64_t size() const;
  int64_t capacity() const { return capacity_; }
  size_t max_packet_bytes() const { return max_packet_bytes_; }
  void attach_error_stash(std::shared_ptr<ErrorStash> stash) { stash_ = std::move(stash); }

 private:
  int pop_locked();

  const int64_t capacity_;
  size_t max_packet_bytes_ = 0;
  std::shared_ptr<HostArena> arena_;
  std::shared_ptr<ErrorStash> stash_;
  std::vector<uint8_t*> buffers_;
  std::vector<PacketMeta> metas_;
  std::vector<int> free_;  // stack of pool buffers, capacity_ entries
  int free_size_ = 0;
  std::vector<int> fifo_;  // circular FIFO of published buffers
  int fifo_head_ = 0;
  int fifo_size_ = 0;
  int event_fd_ = -1;
  bool closed_ = false;
  mutable std::mutex mutex_;
  std::condition_variable pool_cv_;
  std::condition_variable fifo_cv_;
};

// RAII ownership of one popped packet: its buffer returns to the pool when this is released or dies.
class PacketRef {
 public:
  PacketRef(std::shared_ptr<PacketQueue> queue, int index) : queue_(std::move(queue)), index_(index) {}
  ~PacketRef() { release(); }
  PacketRef(const PacketRef&) = delete;
  PacketRef& operator=(const PacketRef&) = delete;

  void release() {
    if (queue_) queue_->release(index_);
    queue_.reset();
  }
  bool released() const { return !queue_; }
  const PacketMeta& meta() const { return queue_->meta(index_); }
  const uint8_t* data() const { return queue_->buffer(index_); }

 private:
  std::shared_ptr<PacketQueue> queue_;
  int index_;
};

}  // namespace reactor
