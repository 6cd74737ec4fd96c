// InputRing: N preallocated RGB24 slots of decoded client input; producers (decoders, the copying write) fill
// them, the session thread reads the newest (or the oldest first) as zero-copy views it holds until released.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/FrameRing.h"
#include "core/HostArena.h"
#include "core/Stats.h"

namespace reactor {

struct InputMeta {
  int64_t index = 0;  // per-ring counter from 0 since construction or reset
  int64_t width = 0;
  int64_t height = 0;
  int64_t capture_ns = 0;  // when the client captured it (its clock mapped onto ours), or arrival
  int64_t arrival_ns = 0;  // when its bytes reached the engine
  int64_t ready_ns = 0;    // when it was committed (decoded / copied)
  bool keyframe = true;
};

struct InputCounters {
  std::atomic<uint64_t> frames_in{0};       // committed
  std::atomic<uint64_t> frames_read{0};     // returned by read()
  std::atomic<uint64_t> frames_skipped{0};  // ready frames passed over by a latest read
  std::atomic<uint64_t> frames_dropped{0};  // ready frames recycled by a producer (ring full)
  std::atomic<uint64_t> frames_refused{0};  // larger than the slots
};

// The latencies an InputRing records (names in InputRing::kLatencyNames).
enum class InputLatency : int { ArrivalToReady = 0, ReadyToRead, Count };

// What read() hands out: a slot the ring now holds for the reader, and a copy of its metadata.
struct InputRead {
  int slot = -1;
  InputMeta meta;
  const uint8_t* data = nullptr;
};

// Slot states: free -> writing (a producer) -> ready -> held (returned by read) -> free (release_held).
// Note: the producer never waits for the reader. With no free slot it recycles the oldest ready one
// (counted frames_dropped); the reader holds at most slots - 1, so one slot is always free or ready
// for a single producer. Several producers (two decoders, a push_frame) stay safe: one that finds
// every other slot being written waits for the next commit.
class InputRing {
 public:
  static constexpr std::array<const char*, static_cast<int>(InputLatency::Count)> kLatencyNames = {"arrival_to_ready",
                                                                                                   "ready_to_read"};

  InputRing(int64_t slots, int64_t max_width, int64_t max_height);
  ~InputRing();
  InputRing(const InputRing&) = delete;
  InputRing& operator=(const InputRing&) = delete;

  // Producer side. check_size throws FrameError naming both sizes (counted frames_refused) when a
  // frame of width x height does not fit the slots. acquire checks it, then returns a slot to fill.
  void check_size(int64_t width, int64_t height);
  int acquire(int64_t width, int64_t height);
  uint8_t* slot_data(int slot) const { return slot_data_[slot]; }
  // Publishes the slot; returns its frame index, or -1 when a reset happened since the acquire (the
  // frame belongs to the previous session and is dropped). Times < 0: the commit time.
  int64_t commit(int slot, int64_t capture_ns, int64_t arrival_ns, bool keyframe = true);
  void abort(int slot);
  // The copying path: a (height, width, 3) uint8 frame with any byte strides.
  int64_t write(const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides, int64_t capture_ns,
                int64_t arrival_ns);

  // Consumer side (one thread). Fills out[0..] with at most max_out frames and returns how many.
  // latest: the newest ready frame only (older ready ones are skipped); otherwise up to max_out
  // oldest first. timeout_ns: 0 no wait, < 0 until a frame, close or wake. Never holds more than
  // slots - 1 frames: at that limit it returns 0 at once. *woken (if given) says that it returned
  // early for another reason than the timeout (wake(), close(), the hold limit): do not retry.
  int read(InputRead* out, int max_out, bool latest, int64_t timeout_ns, bool* woken = nullptr);
  // The newest frame read() returned, still held; false after reset (or before the first).
  bool current(InputRead* out) const;
  void release_held();  // every held frame except current goes back to the producers
  // Drops ready, held and current frames and restarts the index at 0; returns how many.
  int64_t reset();
  // A waiting read returns now; with none waiting, the next waiting read returns at once.
  void wake();
  void close();
  bool closed() const;

  int64_t slots() const { return slots_; }
  int64_t max_width() const { return max_width_; }
  int64_t max_height() const { return max_height_; }
  size_t slot_bytes() const { return slot_bytes_; }
  int64_t ready_count() const;
  int64_t held_count() const;
  const InputCounters& counters() const { return counters_; }
  const Histogram& histogram(InputLatency which) const { return histograms_[static_cast<int>(which)]; }

 private:
  enum class SlotState : uint8_t { Free, Writing, Ready, Held };

  int take_ready_front_locked();
  int take_ready_back_locked();
  void free_slot_locked(int slot);
  void check_slot_locked(int slot, const char* action) const;

  const int64_t slots_, max_width_, max_height_;
  size_t slot_bytes_ = 0;
  std::shared_ptr<HostArena> arena_;
  InputCounters counters_;
  std::array<Histogram, static_cast<int>(InputLatency::Count)> histograms_;

  mutable std::mutex mutex_;
  std::condition_variable ready_cv_;  // the reader waits for a ready frame
  std::condition_variable slot_cv_;   // a producer waits for a slot (several producers only)
  std::vector<SlotState> states_;
  std::vector<InputMeta> metas_;
  std::vector<uint64_t> epochs_;  // the reset epoch each slot was acquired in
  std::vector<uint8_t*> slot_data_;
  std::vector<int> ready_;  // circular FIFO of ready slots, capacity slots_
  int ready_head_ = 0;
  int ready_size_ = 0;
  int held_ = 0;      // held slots, current included
  int current_ = -1;  // the newest slot returned by read, or -1
  uint64_t epoch_ = 0;
  int64_t next_index_ = 0;
  bool wake_pending_ = false;
  bool closed_ = false;
};

}  // namespace reactor
