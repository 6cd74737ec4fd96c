// Decoder: one native thread per input codec that decodes submitted packets (VP8, JPEG) into an InputRing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/HostArena.h"
#include "core/InputCodec.h"
#include "core/InputRing.h"
#include "core/Stats.h"

namespace reactor {

enum class SubmitResult : uint8_t { Queued, DroppedOldest };
const char* submit_result_name(SubmitResult result);  // "queued" | "dropped_oldest"

struct DecoderCounters {
  std::atomic<uint64_t> packets_in{0};          // accepted by submit
  std::atomic<uint64_t> packets_dropped{0};     // queued, then dropped (oldest first) for a newer one
  std::atomic<uint64_t> packets_refused{0};     // empty or larger than max_packet_bytes
  std::atomic<uint64_t> frames_decoded{0};      // committed into the ring
  std::atomic<uint64_t> frames_discarded{0};    // VP8 delta frames with no reference (waiting for a key frame)
  std::atomic<uint64_t> frames_refused{0};      // decoded size larger than the ring's slots
  std::atomic<uint64_t> decode_errors{0};       // corrupt or unsupported payloads
  std::atomic<uint64_t> resolution_changes{0};  // a frame of another size than the previous one
  std::atomic<uint64_t> keyframe_requests{0};   // need_keyframe went false -> true
};

enum class DecoderLatency : int { QueueWait = 0, Decode, Count };

// Note: packet buffers (queue_capacity + 2 of max_packet_bytes: the queue, the one being decoded,
// the one being filled) are carved from a prefaulted arena at construction and the codec's buffers
// sized for the ring's max size, so the loop allocates nothing of ours per packet. The thread never
// touches Python and never throws: a bad packet is counted, kept as last_error, and the next one
// goes on. submit copies the payload, so the caller's buffer is free when it returns.
class Decoder {
 public:
  static constexpr std::array<const char*, static_cast<int>(DecoderLatency::Count)> kLatencyNames = {"queue_wait",
                                                                                                     "decode"};

  Decoder(std::shared_ptr<InputRing> ring, InputCodec codec, int64_t queue_capacity, int64_t max_packet_bytes);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Any thread. Throws FrameError (counted packets_refused) for an empty or oversized packet, Closed
  // after close(). Times < 0: now (arrival) / the arrival (capture).
  SubmitResult submit(const uint8_t* data, size_t size, int64_t capture_ns = -1, int64_t arrival_ns = -1);

  bool need_keyframe() const { return need_keyframe_.load(std::memory_order_acquire); }
  std::string last_error() const;  // empty: none since construction or reset
  // New session: drops queued packets, waits until the thread is idle with its codec state reset.
  // Throws Timeout when the packet being decoded takes longer than timeout_ns (< 0: no limit).
  void reset(int64_t timeout_ns);
  // Waits until every packet submitted so far is decoded (or dropped); false on timeout.
  bool wait_idle(int64_t timeout_ns);
  void close();
  bool running() const { return running_.load(); }
  // For tests: while held, the thread takes no packet (they queue up, and drop, as behind a slow
  // decoder); resets are still served.
  void hold_for_tests(bool hold);

  InputCodec codec() const { return codec_; }
  int64_t queue_capacity() const { return capacity_; }
  size_t max_packet_bytes() const { return max_packet_bytes_; }
  int64_t queued() const;
  const std::shared_ptr<InputRing>& ring() const { return ring_; }
  const DecoderCounters& counters() const { return counters_; }
  const Histogram& histogram(DecoderLatency which) const { return histograms_[static_cast<int>(which)]; }

 private:
  struct PacketSlot {
    uint8_t* data = nullptr;
    size_t size = 0;
    int64_t capture_ns = 0;
    int64_t arrival_ns = 0;
    int64_t submit_ns = 0;
  };

  void run() noexcept;
  void decode_one(const PacketSlot& packet) noexcept;
  void set_error(const char* message) noexcept;
  void update_need_keyframe() noexcept;

  const std::shared_ptr<InputRing> ring_;
  const InputCodec codec_;
  const int64_t capacity_;
  size_t max_packet_bytes_ = 0;
  std::unique_ptr<PacketDecoder> decoder_;  // the thread's alone
  std::shared_ptr<HostArena> arena_;
  std::vector<PacketSlot> packets_;
  DecoderCounters counters_;
  std::array<Histogram, static_cast<int>(DecoderLatency::Count)> histograms_;
  std::atomic<bool> need_keyframe_{false};

  std::mutex close_mutex_;   // close() from several threads joins once
  std::mutex submit_mutex_;  // submitters one at a time: at most one buffer is being filled
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;  // the thread waits for a packet, a reset or close
  std::condition_variable idle_cv_;  // reset / wait_idle wait for the thread
  std::vector<int> free_;            // stack of free packet slots
  int free_size_ = 0;
  std::vector<int> fifo_;  // circular FIFO of queued packet slots, capacity_ entries
  int fifo_head_ = 0;
  int fifo_size_ = 0;
  int decoding_ = -1;  // the slot the thread is decoding
  bool lost_ = false;  // a queued packet was dropped since the thread last took one
  uint64_t reset_requested_ = 0;
  uint64_t reset_done_ = 0;
  bool cancel_ = false;
  bool hold_ = false;  // hold_for_tests
  bool closed_ = false;

  mutable std::mutex error_mutex_;
  std::string last_error_;

  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace reactor
