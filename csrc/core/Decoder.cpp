// Decoder thread loop: the oldest queued packet, the codec into the ring, the counters; reset handshake.
#include "core/Decoder.h"

#include <pthread.h>

#include <chrono>
#include <cstring>

#include "core/Clock.h"
#include "core/Error.h"

namespace reactor {

namespace {
constexpr int64_t kMaxCapacity = 1024;
constexpr int64_t kMaxPacketBytes = int64_t{1} << 30;
constexpr size_t kBufferAlignment = 64;
}  // namespace

const char* submit_result_name(SubmitResult result) {
  switch (result) {
    case SubmitResult::Queued: return "queued";
    case SubmitResult::DroppedOldest: return "dropped_oldest";
  }
  return "unknown";
}

Decoder::Decoder(std::shared_ptr<InputRing> ring, InputCodec codec, int64_t queue_capacity, int64_t max_packet_bytes)
    : ring_(std::move(ring)), codec_(codec), capacity_(queue_capacity) {
  RE_CHECK(ring_ != nullptr, InvalidArgument, "a decoder needs an input ring");
  RE_CHECK(!ring_->closed(), Closed, "the input ring is closed");
  RE_CHECK(queue_capacity >= 1 && queue_capacity <= kMaxCapacity, InvalidArgument,
           "decoder queue_capacity must be between 1 and ", kMaxCapacity, ", got ", queue_capacity);
  RE_CHECK(max_packet_bytes >= 1 && max_packet_bytes <= kMaxPacketBytes, InvalidArgument,
           "decoder max_packet_bytes must be between 1 and ", kMaxPacketBytes, ", got ", max_packet_bytes);
  max_packet_bytes_ = static_cast<size_t>(max_packet_bytes);
  decoder_ = make_packet_decoder(codec, ring_->max_width(), ring_->max_height());
  const int buffers = static_cast<int>(queue_capacity) + 2;
  const size_t stride = (max_packet_bytes_ + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
  arena_ = std::make_shared<HostArena>(static_cast<int64_t>(stride * static_cast<size_t>(buffers)),
                                       ArenaOptions{false, false, true});
  packets_.resize(static_cast<size_t>(buffers));
  free_.resize(static_cast<size_t>(buffers));
  fifo_.assign(static_cast<size_t>(queue_capacity), -1);
  for (int i = 0; i < buffers; ++i) {
    packets_[i].data = arena_->data() + stride * static_cast<size_t>(i);
    free_[i] = buffers - 1 - i;
  }
  free_size_ = buffers;
  running_ = true;
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), "reactor-decode");
}

Decoder::~Decoder() { close(); }

SubmitResult Decoder::submit(const uint8_t* data, size_t size, int64_t capture_ns, int64_t arrival_ns) {
  if (arrival_ns < 0) arrival_ns = now_ns();
  if (size == 0 || size > max_packet_bytes_) {
    counters_.packets_refused.fetch_add(1, std::memory_order_relaxed);
    RE_CHECK(size > 0, FrameError, "empty ", input_codec_name(codec_), " packet");
    RE_THROW(FrameError, input_codec_name(codec_), " packet of ", size, " bytes is larger than max_packet_bytes (",
             max_packet_bytes_, ", input_max_bytes)");
  }
  std::lock_guard<std::mutex> submitting(submit_mutex_);
  int index;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    RE_CHECK(!closed_, Closed, "the decoder is closed");
    // queued <= capacity, decoding <= 1, filling <= 1 (this one): a buffer is always free.
    index = free_[--free_size_];
  }
  PacketSlot& packet = packets_[index];
  std::memcpy(packet.data, data, size);
  packet.size = size;
  packet.arrival_ns = arrival_ns;
  packet.capture_ns = capture_ns < 0 ? arrival_ns : capture_ns;
  packet.submit_ns = now_ns();
  SubmitResult result = SubmitResult::Queued;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      free_[free_size_++] = index;
      RE_THROW(Closed, "the decoder is closed");
    }
    if (fifo_size_ == capacity_) {
      free_[free_size_++] = fifo_[fifo_head_];
      fifo_head_ = (fifo_head_ + 1) % static_cast<int>(capacity_);
      --fifo_size_;
      lost_ = true;
      counters_.packets_dropped.fetch_add(1, std::memory_order_relaxed);
      result = SubmitResult::DroppedOldest;
    }
    fifo_[(fifo_head_ + fifo_size_) % static_cast<int>(capacity_)] = index;
    ++fifo_size_;
    counters_.packets_in.fetch_add(1, std::memory_order_relaxed);
  }
  work_cv_.notify_one();
  return result;
}

std::string Decoder::last_error() const {
  std::lock_guard<std::mutex> lock(error_mutex_);
  return last_error_;
}

void Decoder::set_error(const char* message) noexcept {
  try {
    std::lock_guard<std::mutex> lock(error_mutex_);
    last_error_ = message;
  } catch (...) {  // out of memory for the message: the counters still say it
  }
}

void Decoder::update_need_keyframe() noexcept {
  const bool need = decoder_->awaiting_keyframe();
  if (need_keyframe_.exchange(need, std::memory_order_acq_rel) != need && need) {
    counters_.keyframe_requests.fetch_add(1, std::memory_order_relaxed);
  }
}

void Decoder::decode_one(const PacketSlot& packet) noexcept {
  const int64_t t_start = now_ns();
  histograms_[static_cast<int>(DecoderLatency::QueueWait)].record(t_start - packet.submit_ns);
  try {
    const DecodeResult result =
        decoder_->decode(packet.data, packet.size, packet.capture_ns, packet.arrival_ns, *ring_);
    switch (result.kind) {
      case DecodeResult::Kind::Frame:
        counters_.frames_decoded.fetch_add(1, std::memory_order_relaxed);
        if (result.resolution_changed) counters_.resolution_changes.fetch_add(1, std::memory_order_relaxed);
        histograms_[static_cast<int>(DecoderLatency::Decode)].record(now_ns() - t_start);
        break;
      case DecodeResult::Kind::Discarded: counters_.frames_discarded.fetch_add(1, std::memory_order_relaxed); break;
      case DecodeResult::Kind::Nothing: break;
    }
  } catch (const FrameError& e) {  // larger than the ring's slots
    counters_.frames_refused.fetch_add(1, std::memory_order_relaxed);
    set_error(e.what());
  } catch (const Closed&) {  // the ring closed under us: shutting down
  } catch (const std::exception& e) {
    counters_.decode_errors.fetch_add(1, std::memory_order_relaxed);
    set_error(e.what());
  } catch (...) {
    counters_.decode_errors.fetch_add(1, std::memory_order_relaxed);
    set_error("unknown error while decoding");
  }
  update_need_keyframe();
}

void Decoder::run() noexcept {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_cv_.wait(lock, [&] { return cancel_ || (fifo_size_ > 0 && !hold_) || reset_requested_ != reset_done_; });
    if (cancel_) break;
    if (reset_requested_ != reset_done_) {
      decoder_->reset();
      need_keyframe_.store(false, std::memory_order_release);
      lost_ = false;
      reset_done_ = reset_requested_;
      idle_cv_.notify_all();
      continue;
    }
    decoding_ = fifo_[fifo_head_];
    fifo_head_ = (fifo_head_ + 1) % static_cast<int>(capacity_);
    --fifo_size_;
    const bool lost = lost_;
    lost_ = false;
    lock.unlock();
    if (lost) decoder_->lost();
    decode_one(packets_[decoding_]);
    lock.lock();
    free_[free_size_++] = decoding_;
    decoding_ = -1;
    if (fifo_size_ == 0) idle_cv_.notify_all();
  }
  running_ = false;
  idle_cv_.notify_all();
}

void Decoder::reset(int64_t timeout_ns) {
  std::unique_lock<std::mutex> lock(mutex_);
  RE_CHECK(!closed_, Closed, "the decoder is closed");
  while (fifo_size_ > 0) {
    free_[free_size_++] = fifo_[fifo_head_];
    fifo_head_ = (fifo_head_ + 1) % static_cast<int>(capacity_);
    --fifo_size_;
  }
  fifo_head_ = 0;
  const uint64_t target = ++reset_requested_;
  work_cv_.notify_one();
  auto done = [&] { return closed_ || (reset_done_ >= target && decoding_ < 0); };
  bool ok = true;
  if (timeout_ns < 0) {
    idle_cv_.wait(lock, done);
  } else {
    ok = idle_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), done);
  }
  RE_CHECK(ok, Timeout, "the decoder was still decoding after ", static_cast<double>(timeout_ns) / 1e6,
           " ms of reset()");
  lock.unlock();
  std::lock_guard<std::mutex> error_lock(error_mutex_);
  last_error_.clear();
}

bool Decoder::wait_idle(int64_t timeout_ns) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto idle = [&] { return closed_ || (fifo_size_ == 0 && decoding_ < 0 && reset_done_ == reset_requested_); };
  if (timeout_ns < 0) {
    idle_cv_.wait(lock, idle);
    return true;
  }
  return idle_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), idle);
}

void Decoder::close() {
  std::lock_guard<std::mutex> closing(close_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancel_ = true;
    closed_ = true;
  }
  work_cv_.notify_all();
  idle_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Decoder::hold_for_tests(bool hold) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    hold_ = hold;
  }
  work_cv_.notify_all();
}

int64_t Decoder::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fifo_size_;
}

}  // namespace reactor
