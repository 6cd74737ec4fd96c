// FrameRing: N preallocated frame slots in a HostArena; one producer (the model), one consumer (the encoder).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/ErrorStash.h"
#include "core/FrameMeta.h"
#include "core/FramePacer.h"
#include "core/HostArena.h"
#include "core/Stats.h"

namespace reactor {

enum class RingPolicy { Block, DropOldest, DropNewest };
RingPolicy parse_ring_policy(const std::string& name);
const char* ring_policy_name(RingPolicy policy);

// What acquire hands the producer. The ticket makes a stale or foreign handle detectable at commit.
struct AcquiredSlot {
  int slot = -1;
  uint64_t ticket = 0;
  uint8_t* data = nullptr;
  int64_t width = 0;
  int64_t height = 0;
  bool dropping = false;  // the scratch slot of drop_newest: the commit counts a drop
  int64_t t_acquire_ns = 0;
};

// Byte strides of a source frame laid out as (height, width, 3) uint8.
struct FrameStrides {
  int64_t row = 0;
  int64_t pixel = 3;
  int64_t channel = 1;
};

// Slot states: free -> writing (producer) -> ready (committed) -> encoding (consumer) -> free.
// Note: slots are fixed at construction; under drop_newest one extra scratch slot absorbs the
// frames that are refused, so the producer's zero-copy path works the same under every policy.
class FrameRing {
 public:
  // Note: how long the consumer spins in take() before it sleeps, where its last wait for a commit
  // was shorter than this (a producer that commits back to back); after a longer wait it sleeps at
  // once, so a model paced at a real frame rate costs no spinning. A commit that finds the consumer
  // spinning needs no futex wake (on this 2-core VM the wake of a sleeping encoder is ~13.6 us of a
  // 15-18 us commit: an IPI to an idle vCPU). Hot-loop `track.frame()` acquire+commit p50 at 720p,
  // by window: 0 -> 16.7 us, 30 us -> 17.6 us (the hot loop's wait is mostly longer), 50 us -> 3.1 us,
  // 100 us -> 2.4-2.7 us, 300 us -> 2.5 us. So 100 us: the spinning costs at most that per frame.
  // A process that may run on one CPU only never spins: the producer could not commit meanwhile.
  static constexpr int64_t kSpinNs = 100'000;
  static constexpr int64_t kDefaultSpin = -1;  // kSpinNs, or 0 on one CPU
  // Note: the watch around an expected commit. A producer at a steady rate (a model paced at 30 fps)
  // commits about one period after its last commit; a consumer asleep at that moment costs each commit
  // a futex wake of a thread on another CPU. So where the consumer knows the producer's period (the
  // median of the shortest of the last kPeriods intervals, kMinPeriodNs to kMaxPeriodNs), take() sleeps
  // until shortly before the next expected commit, then polls for it (nanosleep kPollNs between looks:
  // it wakes itself, so a commit meanwhile finds no sleeper to wake) until shortly after it. The window
  // follows how early and late the last commits came (plus kWakeMarginNs before: a timer wake of an
  // idle vCPU here can come hundreds of us late; plus kMarginNs after), at most kMaxLeadNs before and
  // kMaxTailNs after. A commit outside it wakes the consumer as before; after kMaxMisses windows
  // without a commit it sleeps until one comes. Measured on the 2-core VM, a 720p `track.frame()`
  // acquire+commit paced at 30 fps with a 16 MB sweep between frames, p50 of 3 runs of 150: without
  // the watch 37 us, 150 of 150 commits woke the encoder; with a 200 us lead 19-23 us, 50-82 woke; with
  // the 1 ms lead 17-19 us, 19-21 woke (the first kPeriods + 2 must: the period is not known yet).
  static constexpr int64_t kMarginNs = 200'000;
  static constexpr int64_t kWakeMarginNs = 1'000'000;
  static constexpr int64_t kMaxLeadNs = 2'000'000;
  static constexpr int64_t kMaxTailNs = 2'000'000;
  static constexpr int64_t kPollNs = 20'000;
  static constexpr int64_t kMinPeriodNs = 2'000'000;
  static constexpr int64_t kMaxPeriodNs = 250'000'000;
  static constexpr int kPeriods = 8;
  static constexpr int kMaxMisses = 4;

  FrameRing(int64_t slots, int64_t max_width, int64_t max_height, RingPolicy policy,
            std::shared_ptr<HostArena> arena = nullptr, int64_t spin_ns = kDefaultSpin);
  ~FrameRing();
  FrameRing(const FrameRing&) = delete;
  FrameRing& operator=(const FrameRing&) = delete;

  // Producer side. timeout_ns < 0 waits without limit (block policy only ever waits).
  AcquiredSlot acquire(int64_t width, int64_t height, int64_t timeout_ns);
  // acquire that never waits: false (and `out` untouched) where the block policy would wait.
  bool try_acquire(int64_t width, int64_t height, AcquiredSlot& out);
  // frame_index < 0: the next of the ring's own counter; pts_ns < 0: the commit time.
  int64_t commit(int slot, uint64_t ticket, int64_t frame_index = -1, int64_t pts_ns = -1);
  void abort(int slot, uint64_t ticket);
  // The copying emit: acquire, copy a (height, width, 3) uint8 frame with any byte strides, commit.
  int64_t write(const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides, int64_t frame_index,
                int64_t pts_ns, int64_t timeout_ns);
  // The paced copying emit of one frame (the caller has called pacer.begin_batch for its batch):
  // the pacer stamps it and holds the producer to the rate (cut short by pacer.stop()), then acquire,
  // copy, commit, and the pacer records the emit latency (copy start to commit, the wait excluded).
  int64_t write_paced(const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides, FramePacer& pacer,
                      int64_t timeout_ns);

  // Consumer side. take blocks until a ready slot (oldest first), close, or cancel; -1 for the latter.
  // It may spin up to spin_ns first (see kSpinNs); a commit, close or wake_consumer ends the spin.
  int take(const std::atomic<bool>& cancel);
  const FrameMeta& meta(int slot) const { return metas_[slot]; }
  const uint8_t* slot_data(int slot) const { return slot_data_[slot]; }
  void release(int slot);
  void wake_consumer();
  // True once every committed frame has been taken and released (false on timeout).
  bool wait_idle(int64_t timeout_ns);

  // Discards ready frames (counted as frames_discarded); returns how many.
  int64_t reset();
  void close();
  bool closed() const;

  int64_t slots() const { return slots_; }
  int64_t max_width() const { return max_width_; }
  int64_t max_height() const { return max_height_; }
  size_t slot_bytes() const { return slot_bytes_; }
  int64_t spin_ns() const { return spin_ns_; }
  RingPolicy policy() const { return policy_; }
  int64_t ready_count() const;
  const std::shared_ptr<HostArena>& arena() const { return arena_; }
  Stats& stats() { return *stats_; }
  const std::shared_ptr<Stats>& stats_ptr() const { return stats_; }
  const std::shared_ptr<ErrorStash>& error_stash() const { return stash_; }

 private:
  enum class SlotState : uint8_t { Free, Writing, Ready, Encoding };

  AcquiredSlot acquire_locked(std::unique_lock<std::mutex>& lock, int64_t width, int64_t height, int64_t timeout_ns,
                              int64_t t_start);
  void check_open_locked() const;
  void check_held_locked(int slot, uint64_t ticket, const char* action) const;
  int find_free_locked() const;
  // Whether an event came after `seen` (a commit, close or wake_consumer), or a cancel: read without the
  // lock, by take()'s spin (spin_until) and its poll in the watch window (poll_until, kPollNs: the
  // consumer wakes itself, so a commit meanwhile needs no wake-up).
  bool event_since(uint64_t seen, const std::atomic<bool>& cancel) const {
    return events_.load(std::memory_order_acquire) != seen || cancel.load(std::memory_order_relaxed);
  }
  // The next commit the consumer expects, with the window to poll in around it (the spread of the
  // last commits around theirs).
  struct ExpectedCommit {
    int64_t at_ns = -1;  // -1: none expected
    int64_t period_ns = 0;
    int64_t watch_from_ns = 0, watch_until_ns = 0;
  };
  // Consumer-only: the commit times it took; the next expected commit after now_ns.
  void note_commit(int64_t t_commit_ns);
  ExpectedCommit expected_commit(int64_t now_ns) const;
  // Sleeps (the lock released) until a commit, a wake-up, or the window, then polls in the window;
  // returns with the lock held again.
  void wait_around_expected(std::unique_lock<std::mutex>& lock, const ExpectedCommit& expected,
                            const std::atomic<bool>& cancel);

  const int64_t slots_, max_width_, max_height_;
  const RingPolicy policy_;
  const int scratch_;  // index of the drop_newest scratch slot, or -1
  size_t slot_bytes_ = 0;
  std::shared_ptr<HostArena> arena_;
  std::shared_ptr<Stats> stats_;
  std::shared_ptr<ErrorStash> stash_;

  mutable std::mutex mutex_;
  std::condition_variable free_cv_;   // producer waits for a free slot
  std::condition_variable ready_cv_;  // consumer waits for a ready slot
  std::condition_variable idle_cv_;   // flush waits for the ring to drain
  std::vector<SlotState> states_;
  std::vector<uint64_t> tickets_;
  std::vector<FrameMeta> metas_;
  std::vector<uint8_t*> slot_data_;
  std::vector<int> ready_;  // FIFO of ready slots as a circular buffer of capacity slots_
  int ready_head_ = 0;
  int ready_size_ = 0;
  int writing_ = -1;               // the slot the producer holds, or -1
  int encoding_ = 0;               // slots the consumer holds
  bool consumer_waiting_ = false;  // the consumer sleeps in take(): only then does commit notify it
  // Commits, closes and wake_consumer calls so far: what a consumer spinning in take() (see kSpinNs)
  // watches without the lock.
  std::atomic<uint64_t> events_{0};
  const int64_t spin_ns_;
  bool spin_next_ = true;             // consumer-only: the last wait for a commit was short, so spin before sleeping
  int64_t last_commit_ns_ = -1;       // consumer-only: the commit time of the last slot taken
  int64_t intervals_[kPeriods] = {};  // consumer-only: the last intervals between those (0: none yet)
  int next_interval_ = 0;
  int64_t waited_for_ns_ = -1;     // consumer-only: the expected commit its last wait was around
  int64_t waited_period_ns_ = 0;   // consumer-only: the producer's period it expected then
  int64_t errors_[kPeriods] = {};  // consumer-only: how late (negative: early) the last such commits came
  int next_error_ = 0, errors_seen_ = 0;
  uint64_t next_ticket_ = 1;
  int64_t next_frame_index_ = 0;
  bool closed_ = false;
};

}  // namespace reactor
