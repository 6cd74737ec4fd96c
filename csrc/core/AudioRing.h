// AudioRing: a preallocated FIFO of interleaved int16 sample frames, one producer and one consumer, with
// an eventfd that is readable while at least notify_frames are buffered (or the ring is closed).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace reactor {

struct AudioCounters {
  std::atomic<uint64_t> frames_in{0};
  std::atomic<uint64_t> frames_out{0};
  std::atomic<uint64_t> frames_dropped{0};  // overwritten (oldest first) by a write into a full ring, or reset
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> reads{0};
};

// Note: a frame is one sample per channel. Each write records the pts of its first frame as an
// anchor (up to kAnchors kept; older ones merge), so the pts of the frame at the head follows gaps
// between writes, and a read returns the pts of its first frame. The eventfd is level-like: set
// when the buffered frames reach notify_frames, drained when they drop below (by a read, reset or
// clear_event), so a reader that add_reader()s it wakes exactly while there is enough to read.
class AudioRing {
 public:
  static constexpr int kAnchors = 256;

  AudioRing(int64_t rate, int64_t channels, int64_t capacity_frames, int64_t notify_frames = 0);
  ~AudioRing();
  AudioRing(const AudioRing&) = delete;
  AudioRing& operator=(const AudioRing&) = delete;

  // Copies frames (frames * channels samples); pts_ns < 0: now. Full: the oldest frames are
  // overwritten; returns how many were dropped by this write. Throws Closed after close().
  int64_t write(const int16_t* samples, int64_t frames, int64_t pts_ns = -1);
  // Waits (timeout_ns: 0 none, < 0 no limit) until min_frames are buffered, close or wake, then
  // reads up to max_frames into out. Returns (frames read, pts of the first; -1 when none).
  // *woken (if given) says that it returned early for another reason than the timeout (wake(),
  // close(), no room in out): do not retry.
  std::pair<int64_t, int64_t> read(int16_t* out, int64_t max_frames, int64_t min_frames, int64_t timeout_ns,
                                   bool* woken = nullptr);
  int64_t available() const;
  int event_fd() const { return event_fd_; }
  void clear_event();
  int64_t reset();  // drops what is buffered; returns how many frames
  void wake();
  void close();
  bool closed() const;

  int64_t rate() const { return rate_; }
  int64_t channels() const { return channels_; }
  int64_t capacity_frames() const { return capacity_; }
  int64_t notify_frames() const { return notify_; }
  const AudioCounters& counters() const { return counters_; }

 private:
  struct Anchor {
    int64_t frame = 0;  // absolute frame number (frames written since construction)
    int64_t pts_ns = 0;
  };

  int64_t pts_at_locked(int64_t frame) const;
  void drop_anchors_before_locked(int64_t frame);
  void update_event_locked();

  const int64_t rate_, channels_, capacity_, notify_;
  std::vector<int16_t> buffer_;  // capacity_ * channels_ samples
  int64_t written_ = 0;          // absolute frames written
  int64_t read_ = 0;             // absolute frame at the head
  std::vector<Anchor> anchors_;  // circular, kAnchors entries
  int anchor_head_ = 0;
  int anchor_size_ = 0;
  AudioCounters counters_;
  int event_fd_ = -1;
  bool event_set_ = false;
  bool wake_pending_ = false;
  bool closed_ = false;
  mutable std::mutex mutex_;
  std::condition_variable data_cv_;
};

}  // namespace reactor
