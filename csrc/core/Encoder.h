// Encoder: the one native thread that drains a FrameRing, encodes, and publishes to a PacketQueue.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "core/Codec.h"
#include "core/FrameRing.h"
#include "core/PacketQueue.h"

namespace reactor {

// Note: the thread starts in the constructor and is joined by close() or the destructor, which
// cancel every wait it can be in (a ready slot, a free packet buffer) so joining never hangs.
// It never touches Python; a failure is counted, stashed, and re-raised at the next call of the
// producer (acquire/commit/write), the consumer (pop) or the owner (check/flush/close).
class Encoder {
 public:
  Encoder(std::shared_ptr<FrameRing> ring, const CodecOptions& options, int64_t queue_capacity);
  // Takes a ready-made codec: for tests that need one that fails.
  Encoder(std::shared_ptr<FrameRing> ring, std::unique_ptr<FrameCodec> codec, int64_t queue_capacity);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // Waits until every frame committed so far is published (or dropped). Throws Timeout.
  void flush(int64_t timeout_ns);
  void check();
  void close();
  bool running() const { return running_.load(); }

  const std::shared_ptr<PacketQueue>& queue() const { return queue_; }
  const std::shared_ptr<FrameRing>& ring() const { return ring_; }
  CodecKind codec() const { return codec_->kind(); }

 private:
  void run() noexcept;

  std::shared_ptr<FrameRing> ring_;
  std::unique_ptr<FrameCodec> codec_;
  std::shared_ptr<PacketQueue> queue_;
  std::shared_ptr<ErrorStash> stash_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace reactor
