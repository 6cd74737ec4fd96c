// Encoder: the one native thread that drains a FrameRing, encodes each frame once per enabled output
// (a codec and its PacketQueue), and publishes the packets.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/Codec.h"
#include "core/FrameRing.h"
#include "core/PacketQueue.h"
#include "core/ThreadPolicy.h"

namespace reactor {

// What one output did; the encoder thread counts, any thread reads.
struct OutputCounters {
  std::atomic<uint64_t> frames_encoded{0};  // packets published
  std::atomic<uint64_t> keyframes{0};       // of which key frames
  std::atomic<uint64_t> bytes{0};           // their bytes
  std::atomic<uint64_t> frames_dropped{0};  // enabled, but no free packet buffer (extra outputs) or no output
};

// Note: the thread starts in the constructor and is joined by close() or the destructor, which
// cancel every wait it can be in (a ready slot, a free packet buffer) so joining never hangs.
// It never touches Python; a failure is counted, stashed, and re-raised at the next call of the
// producer (acquire/commit/write), the consumer (pop) or the owner (check/flush/close).
//
// Outputs: the primary (outputs()[0]) starts enabled, extra ones disabled; a disabled output's codec
// does not run. Per frame the thread waits for a primary packet buffer before it takes the slot, so
// that while the primary's consumer lags, frames wait in the ring and its policy decides the drops.
// An extra output never makes it wait: with no free buffer that output drops the frame (counted).
class Encoder {
 public:
  // The primary codec options.kind, then one output per extra codec (same options otherwise).
  Encoder(std::shared_ptr<FrameRing> ring, const CodecOptions& options, int64_t queue_capacity,
          const std::vector<CodecKind>& extra_codecs = {}, ThreadPolicy policy = ThreadPolicy::Batch);
  // Takes ready-made codecs, the primary first: for tests that need one that fails.
  Encoder(std::shared_ptr<FrameRing> ring, std::vector<std::unique_ptr<FrameCodec>> codecs, int64_t queue_capacity,
          int64_t bitrate_bps = CodecOptions{}.bitrate_bps, ThreadPolicy policy = ThreadPolicy::Batch);
  Encoder(std::shared_ptr<FrameRing> ring, std::unique_ptr<FrameCodec> codec, int64_t queue_capacity);
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // Waits until every frame committed so far is published (or dropped). Throws Timeout.
  void flush(int64_t timeout_ns);
  void check();
  void close();
  bool running() const { return running_.load(); }

  const std::shared_ptr<PacketQueue>& queue() const { return outputs_[0]->queue; }  // the primary's
  const std::shared_ptr<PacketQueue>& queue_for(CodecKind codec) const { return output(codec).queue; }
  const std::shared_ptr<FrameRing>& ring() const { return ring_; }
  CodecKind codec() const { return outputs_[0]->kind; }
  std::vector<CodecKind> codecs() const;  // primary first
  // The thread's policy as applied at construction, and the errno of applying the requested one
  // (0: applied; a sandbox may refuse sched_setscheduler, and the thread then runs normal).
  ThreadPolicy thread_policy() const { return policy_; }
  int thread_policy_error() const { return policy_error_; }

  // Any thread, no lock: applied from the next frame the encoder thread takes.
  void set_output_enabled(CodecKind codec, bool enabled);  // enabling one requests a key frame of it
  bool output_enabled(CodecKind codec) const { return output(codec).enabled.load(); }
  const OutputCounters& output_counters(CodecKind codec) const { return output(codec).counters; }
  void request_keyframe();  // every output's next frame is a key frame
  void set_bitrate(int64_t bps);
  int64_t bitrate() const { return bitrate_bps_.load(); }
  // Fault injection for tests: the next frame this output encodes fails with EncodeError, exactly as
  // a codec failure does (counted in encode_errors, stashed, the frame's packet discarded).
  void inject_error_for_tests(CodecKind codec) { output(codec).fail_next = true; }

 private:
  struct Output {
    CodecKind kind;
    std::unique_ptr<FrameCodec> codec;
    std::shared_ptr<PacketQueue> queue;
    std::atomic<bool> enabled{false};
    std::atomic<bool> keyframe_requested{false};
    std::atomic<bool> fail_next{false};  // inject_error_for_tests
    OutputCounters counters;
  };

  Output& output(CodecKind codec) const;  // throws InvalidArgument naming the outputs there are
  void run() noexcept;
  // Encodes the slot into buffer, ready to publish; false: nothing to publish (buffer discarded).
  bool encode_into(Output& out, int slot, int buffer) noexcept;

  std::shared_ptr<FrameRing> ring_;
  std::vector<std::unique_ptr<Output>> outputs_;
  std::shared_ptr<ErrorStash> stash_;
  std::atomic<int64_t> bitrate_bps_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> running_{false};
  ThreadPolicy policy_ = ThreadPolicy::Normal;
  int policy_error_ = 0;
  std::thread thread_;
};

}  // namespace reactor
