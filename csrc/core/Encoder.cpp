// Encoder thread loop: the primary's packet buffer, then the oldest ready slot, encode per output, release.
#include "core/Encoder.h"

#include <pthread.h>

#include <string>

#include "core/Clock.h"
#include "core/Error.h"

namespace reactor {

namespace {

std::vector<std::unique_ptr<FrameCodec>> make_codecs(const CodecOptions& options,
                                                     const std::vector<CodecKind>& extra_codecs) {
  std::vector<std::unique_ptr<FrameCodec>> codecs;
  codecs.push_back(make_codec(options));
  for (CodecKind kind : extra_codecs) {
    CodecOptions extra = options;
    extra.kind = kind;
    codecs.push_back(make_codec(extra));
  }
  return codecs;
}

CodecOptions with_policy(CodecOptions options, ThreadPolicy policy) {
  options.thread_policy = policy;  // a codec's own threads (JPEG stripes) are scheduled as the encoder's
  return options;
}

std::vector<std::unique_ptr<FrameCodec>> one_codec(std::unique_ptr<FrameCodec> codec) {
  std::vector<std::unique_ptr<FrameCodec>> codecs;
  codecs.push_back(std::move(codec));
  return codecs;
}

}  // namespace

Encoder::Encoder(std::shared_ptr<FrameRing> ring, const CodecOptions& options, int64_t queue_capacity,
                 const std::vector<CodecKind>& extra_codecs, ThreadPolicy policy)
    : Encoder(std::move(ring), make_codecs(with_policy(options, policy), extra_codecs), queue_capacity,
              options.bitrate_bps, policy) {}

Encoder::Encoder(std::shared_ptr<FrameRing> ring, std::unique_ptr<FrameCodec> codec, int64_t queue_capacity)
    : Encoder(std::move(ring), one_codec(std::move(codec)), queue_capacity) {}

Encoder::Encoder(std::shared_ptr<FrameRing> ring, std::vector<std::unique_ptr<FrameCodec>> codecs,
                 int64_t queue_capacity, int64_t bitrate_bps, ThreadPolicy policy)
    : ring_(std::move(ring)), bitrate_bps_(bitrate_bps) {
  RE_CHECK(ring_ != nullptr, InvalidArgument, "an encoder needs a frame ring");
  RE_CHECK(!ring_->closed(), Closed, "the frame ring is closed");
  RE_CHECK(!codecs.empty(), InvalidArgument, "an encoder needs at least one codec");
  check_bitrate(bitrate_bps);
  stash_ = ring_->error_stash();
  for (auto& codec : codecs) {
    RE_CHECK(codec != nullptr, InvalidArgument, "an encoder output needs a codec");
    const CodecKind kind = codec->kind();
    for (const auto& out : outputs_) {
      RE_CHECK(out->kind != kind, InvalidArgument, "codec '", codec_name(kind), "' is given twice",
               kind == outputs_[0]->kind ? " (it is the primary codec)" : "", "; each output has its own codec");
    }
    codec->reserve(ring_->max_width(), ring_->max_height());
    auto out = std::make_unique<Output>();
    out->kind = kind;
    out->queue = std::make_shared<PacketQueue>(
        queue_capacity, static_cast<int64_t>(codec->max_bytes(ring_->max_width(), ring_->max_height())));
    out->queue->attach_error_stash(stash_);
    out->codec = std::move(codec);
    outputs_.push_back(std::move(out));
  }
  outputs_[0]->enabled = true;
  running_ = true;
  thread_ = std::thread([this] { run(); });
  // Named here, not in run(), so it carries the name as soon as the constructor returns: told
  // apart in top, perf and py-spy (15 characters at most).
  pthread_setname_np(thread_.native_handle(), "reactor-encode");
  policy_error_ = apply_thread_policy(thread_.native_handle(), policy);
  policy_ = policy_error_ == 0 ? policy : ThreadPolicy::Normal;
}

Encoder::~Encoder() { close(); }

Encoder::Output& Encoder::output(CodecKind codec) const {
  for (const auto& out : outputs_) {
    if (out->kind == codec) return *out;
  }
  std::string names;
  for (const auto& out : outputs_) names += std::string(names.empty() ? "" : ", ") + codec_name(out->kind);
  RE_THROW(InvalidArgument, "the encoder has no '", codec_name(codec), "' output; its outputs are: ", names);
}

std::vector<CodecKind> Encoder::codecs() const {
  std::vector<CodecKind> kinds;
  for (const auto& out : outputs_) kinds.push_back(out->kind);
  return kinds;
}

void Encoder::set_output_enabled(CodecKind codec, bool enabled) {
  Output& out = output(codec);
  if (enabled) {
    // A consumer that starts now needs a key frame first.
    if (!out.enabled.load()) out.keyframe_requested = true;
    out.enabled = true;
  } else {
    out.enabled = false;
    out.queue->wake_producer();  // the thread may be waiting for this output's buffer
  }
}

void Encoder::request_keyframe() {
  for (auto& out : outputs_) out->keyframe_requested = true;
}

void Encoder::set_bitrate(int64_t bps) {
  check_bitrate(bps);
  bitrate_bps_ = bps;
}

void Encoder::run() noexcept {
  Output& primary = *outputs_[0];
  int64_t last_publish_ns = -1;
  while (!cancel_.load()) {
    // The primary's buffer first: while the encoder waits for its consumer, frames stay ready in
    // the ring, where the ring's policy (not this thread) decides what is dropped. Disabling the
    // primary ends the wait.
    int primary_buffer = -1;
    if (primary.enabled.load()) {
      primary_buffer = primary.queue->acquire_buffer(cancel_, &primary.enabled);
      if (primary_buffer < 0 && (cancel_.load() || primary.queue->closed())) break;
    }
    const int slot = ring_->take(cancel_);
    if (slot < 0) {
      if (primary_buffer >= 0) primary.queue->discard(primary_buffer);
      break;
    }
    Stats& stats = ring_->stats();
    const FrameMeta& frame = ring_->meta(slot);
    stats.record(Latency::QueueWait, now_ns() - frame.t_commit_ns);
    bool published = false;
    for (size_t i = 0; i < outputs_.size(); ++i) {
      Output& out = *outputs_[i];
      int buffer = primary_buffer;
      if (i > 0) {
        if (!out.enabled.load()) continue;  // a disabled output costs nothing
        buffer = out.queue->try_acquire_buffer();
        if (buffer < 0) {
          out.counters.frames_dropped.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
      }
      if (buffer < 0) continue;
      if (!encode_into(out, slot, buffer)) continue;
      if (!published) {
        // The ring's figures describe each frame's first packet (the primary's when it is enabled),
        // counted before it is published, so a consumer that has the packet sees the counts too.
        published = true;
        const PacketMeta& packet = out.queue->meta(buffer);
        stats.record(Latency::Encode, packet.t_encode_end_ns - packet.t_encode_start_ns);
        stats.record(Latency::CommitToPacket, packet.t_publish_ns - frame.t_commit_ns);
        if (last_publish_ns >= 0) stats.record(Latency::PacketGap, packet.t_publish_ns - last_publish_ns);
        last_publish_ns = packet.t_publish_ns;
        stats.counters.frames_encoded.fetch_add(1, std::memory_order_relaxed);
      }
      out.queue->publish(buffer);
    }
    ring_->release(slot);
  }
  running_ = false;
}

bool Encoder::encode_into(Output& out, int slot, int buffer) noexcept {
  const FrameMeta& frame = ring_->meta(slot);
  PacketMeta& packet = out.queue->meta(buffer);
  static_cast<FrameMeta&>(packet) = frame;
  packet.codec = out.kind;
  packet.t_encode_start_ns = now_ns();
  const FrameControl control{out.keyframe_requested.exchange(false), bitrate_bps_.load(std::memory_order_relaxed),
                             frame.pts_ns};
  try {
    if (out.fail_next.load(std::memory_order_relaxed) && out.fail_next.exchange(false)) {
      RE_THROW(EncodeError, codec_name(out.kind), " encoding failed: injected by inject_error_for_tests()");
    }
    const EncodedFrame encoded = out.codec->encode(ring_->slot_data(slot), frame.width, frame.height, control,
                                                   out.queue->buffer(buffer), out.queue->max_packet_bytes());
    if (encoded.size == 0) {  // the codec skipped the frame
      out.queue->discard(buffer);
      out.counters.frames_dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    packet.size = encoded.size;
    packet.keyframe = encoded.keyframe;
    packet.t_encode_end_ns = now_ns();
    packet.t_publish_ns = packet.t_encode_end_ns;
    out.counters.frames_encoded.fetch_add(1, std::memory_order_relaxed);
    if (encoded.keyframe) out.counters.keyframes.fetch_add(1, std::memory_order_relaxed);
    out.counters.bytes.fetch_add(encoded.size, std::memory_order_relaxed);
    return true;
  } catch (...) {
    if (control.keyframe) out.keyframe_requested = true;  // still owed to whoever asked
    ring_->stats().counters.encode_errors.fetch_add(1, std::memory_order_relaxed);
    stash_->set(std::current_exception());
    out.queue->discard(buffer);
    return false;
  }
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
    for (auto& out : outputs_) out->queue->wake_producer();
    thread_.join();
    for (auto& out : outputs_) {
      out->queue->close();
      out->codec.reset();  // its library state and threads (JPEG stripe helpers) go now, not at destruction
    }
  }
}

}  // namespace reactor
