// Encoder thread loop: packet buffer first, then the oldest ready slot, encode, publish, release.
#include "core/Encoder.h"

#include <pthread.h>

#include <string>

#include "core/Clock.h"
#include "core/Error.h"

namespace reactor {

Encoder::Encoder(std::shared_ptr<FrameRing> ring, const CodecOptions& options, int64_t queue_capacity)
    : Encoder(ring, make_codec(options), queue_capacity) {}

Encoder::Encoder(std::shared_ptr<FrameRing> ring, std::unique_ptr<FrameCodec> codec, int64_t queue_capacity)
    : ring_(std::move(ring)), codec_(std::move(codec)) {
  RE_CHECK(ring_ != nullptr, InvalidArgument, "an encoder needs a frame ring");
  RE_CHECK(!ring_->closed(), Closed, "the frame ring is closed");
  queue_ = std::make_shared<PacketQueue>(
      queue_capacity, static_cast<int64_t>(codec_->max_bytes(ring_->max_width(), ring_->max_height())));
  stash_ = ring_->error_stash();
  queue_->attach_error_stash(stash_);
  running_ = true;
  thread_ = std::thread([this] { run(); });
  // Named here, not in run(), so it carries the name as soon as the constructor returns: told
  // apart in top, perf and py-spy (15 characters at most).
  pthread_setname_np(thread_.native_handle(), "reactor-encode");
}

Encoder::~Encoder() { close(); }

void Encoder::run() noexcept {
  Stats& stats = ring_->stats();
  int64_t last_publish_ns = -1;
  while (!cancel_.load()) {
    // A buffer first: while the encoder waits for the consumer, frames stay ready in the ring,
    // where the ring's policy (not this thread) decides what is dropped.
    const int buffer = queue_->acquire_buffer(cancel_);
    if (buffer < 0) break;
    const int slot = ring_->take(cancel_);
    if (slot < 0) {
      queue_->discard(buffer);
      break;
    }
    const FrameMeta& frame = ring_->meta(slot);
    PacketMeta& packet = queue_->meta(buffer);
    static_cast<FrameMeta&>(packet) = frame;
    packet.codec = codec_->kind();
    packet.t_encode_start_ns = now_ns();
    stats.record(Latency::QueueWait, packet.t_encode_start_ns - frame.t_commit_ns);
    try {
      packet.size = codec_->encode(ring_->slot_data(slot), frame.width, frame.height, queue_->buffer(buffer),
                                   queue_->max_packet_bytes());
      packet.t_encode_end_ns = now_ns();
      packet.t_publish_ns = packet.t_encode_end_ns;
      stats.record(Latency::Encode, packet.t_encode_end_ns - packet.t_encode_start_ns);
      stats.record(Latency::CommitToPacket, packet.t_publish_ns - frame.t_commit_ns);
      if (last_publish_ns >= 0) stats.record(Latency::PacketGap, packet.t_publish_ns - last_publish_ns);
      last_publish_ns = packet.t_publish_ns;
      stats.counters.frames_encoded.fetch_add(1, std::memory_order_relaxed);
      queue_->publish(buffer);
    } catch (...) {
      stats.counters.encode_errors.fetch_add(1, std::memory_order_relaxed);
      stash_->set(std::current_exception());
      queue_->discard(buffer);
    }
    ring_->release(slot);
  }
  running_ = false;
}

void Encoder::flush(int64_t timeout_ns) {
  stash_->rethrow_if_set();
  RE_CHECK(running_.load(), Closed, "the encoder is closed");
  const bool idle = ring_->wait_idle(timeout_ns);
  stash_->rethrow_if_set();
  RE_CHECK(idle, Timeout, "frames still waiting to be encoded after ", static_cast<double>(timeout_ns) / 1e6,
           " ms (the packet queue is full and nobody pops it?)");
}

void Encoder::check() { stash_->rethrow_if_set(); }

void Encoder::close() {
  if (thread_.joinable()) {
    cancel_ = true;
    ring_->wake_consumer();
    queue_->wake_producer();
    thread_.join();
    queue_->close();
  }
}

}  // namespace reactor
