// FrameRing: slot state machine, ring policies and the strided copy of the copying emit.
#include "core/FrameRing.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/Clock.h"
#include "core/Error.h"
#include "core/Spin.h"

namespace reactor {

namespace {

constexpr int64_t kMaxSlots = 1024;
constexpr int64_t kMaxDimension = 65500;  // the JPEG format's own limit
constexpr size_t kSlotAlignment = 4096;

std::string milliseconds_text(int64_t ns) { return std::to_string(static_cast<double>(ns) / 1e6) + " ms"; }

// Note: how a frame is copied into its slot, chosen by measurement (2-core Xeon VM; 300 copies from 8
// cycled sources, 16 MB swept before each as a model step does, the slot then read by a thread on the
// other core as the encoder reads it; p50 of two runs):
//   512x512  (768 KiB): memcpy 114-117 us, SSE2 streaming stores  99 us; slot read after: 65 vs 84-100 us
//   1280x720 (2.6 MiB): memcpy 429-471 us, SSE2 streaming stores 342-349 us; slot read after: 261-264 vs 236-274 us
// The copy is on the model's critical path and the encoder's read is a small part of an encode, so
// frames from kStreamingBytes up are written with streaming (non-temporal) stores; smaller ones with
// memcpy, which leaves them in cache for the encoder. Huge pages: the arena already asks for them
// (MADV_HUGEPAGE, HostArena.cpp).
constexpr size_t kStreamingBytes = 256 * 1024;

int64_t default_spin_ns() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const bool one_cpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) < 2;
  return one_cpu ? 0 : FrameRing::kSpinNs;
}

void copy_streaming(uint8_t* dst, const uint8_t* src, size_t bytes) {
#if defined(__SSE2__)
  const size_t head = (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16;
  if (bytes < head + 64) {
    std::memcpy(dst, src, bytes);
    return;
  }
  std::memcpy(dst, src, head);
  dst += head;
  src += head;
  bytes -= head;
  for (; bytes >= 64; bytes -= 64, dst += 64, src += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
  }
  std::memcpy(dst, src, bytes);
#else
  std::memcpy(dst, src, bytes);
#endif
}

void copy_cached(uint8_t* dst, const uint8_t* src, size_t bytes) { std::memcpy(dst, src, bytes); }

// A (height, width, 3) uint8 frame with any byte strides into a packed slot.
void copy_frame(uint8_t* dst, const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides) {
  const size_t row_bytes = static_cast<size_t>(width) * 3;
  const bool packed_pixels = strides.pixel == 3 && strides.channel == 1;
  const bool streaming = row_bytes * static_cast<size_t>(height) >= kStreamingBytes;
  void (*const copy)(uint8_t*, const uint8_t*, size_t) = streaming ? copy_streaming : copy_cached;
  if (packed_pixels && strides.row == static_cast<int64_t>(row_bytes)) {
    copy(dst, src, row_bytes * static_cast<size_t>(height));  // one span
  } else {
    for (int64_t y = 0; y < height; ++y, dst += row_bytes) {
      const uint8_t* row = src + y * strides.row;
      if (packed_pixels) {
        copy(dst, row, row_bytes);
        continue;
      }
      for (int64_t x = 0; x < width; ++x) {
        const uint8_t* pixel = row + x * strides.pixel;
        dst[3 * x] = pixel[0];
        dst[3 * x + 1] = pixel[strides.channel];
        dst[3 * x + 2] = pixel[2 * strides.channel];
      }
    }
  }
#if defined(__SSE2__)
  if (streaming) _mm_sfence();  // streaming stores are weakly ordered: visible before the commit
#endif
}

}  // namespace

RingPolicy parse_ring_policy(const std::string& name) {
  if (name == "block") return RingPolicy::Block;
  if (name == "drop_oldest") return RingPolicy::DropOldest;
  if (name == "drop_newest") return RingPolicy::DropNewest;
  RE_THROW(InvalidArgument, "unknown ring policy '", name, "'; expected 'block', 'drop_oldest' or 'drop_newest'");
}

const char* ring_policy_name(RingPolicy policy) {
  switch (policy) {
    case RingPolicy::Block: return "block";
    case RingPolicy::DropOldest: return "drop_oldest";
    case RingPolicy::DropNewest: return "drop_newest";
  }
  return "unknown";
}

FrameRing::FrameRing(int64_t slots, int64_t max_width, int64_t max_height, RingPolicy policy,
                     std::shared_ptr<HostArena> arena, int64_t spin_ns)
    : slots_(slots),
      max_width_(max_width),
      max_height_(max_height),
      policy_(policy),
      scratch_(policy == RingPolicy::DropNewest ? static_cast<int>(slots) : -1),
      spin_ns_(spin_ns == kDefaultSpin ? default_spin_ns() : spin_ns),
      stats_(std::make_shared<Stats>()),
      stash_(std::make_shared<ErrorStash>()) {
  RE_CHECK(slots >= 2 && slots <= kMaxSlots, InvalidArgument, "a frame ring needs between 2 and ", kMaxSlots,
           " slots, got ", slots);
  RE_CHECK(spin_ns >= kDefaultSpin, InvalidArgument, "a frame ring's spin_ns must be >= 0 (or -1: the default), got ",
           spin_ns);
  RE_CHECK(max_width > 0 && max_height > 0, InvalidArgument,
           "frame ring max_width and max_height must be positive, got ", max_width, "x", max_height);
  RE_CHECK(max_width <= kMaxDimension && max_height <= kMaxDimension, InvalidArgument, "frame ring max size ",
           max_width, "x", max_height, " exceeds ", kMaxDimension, " pixels a side");
  const size_t frame_bytes = static_cast<size_t>(max_width) * static_cast<size_t>(max_height) * 3;
  slot_bytes_ = (frame_bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
  const int total_slots = static_cast<int>(slots) + (scratch_ >= 0 ? 1 : 0);
  const size_t total_bytes = slot_bytes_ * static_cast<size_t>(total_slots);

  size_t base = 0;
  if (arena) {
    base = arena->allocate(static_cast<int64_t>(total_bytes), kSlotAlignment);
    arena_ = std::move(arena);
  } else {
    arena_ = std::make_shared<HostArena>(static_cast<int64_t>(total_bytes), ArenaOptions{});
  }
  states_.assign(total_slots, SlotState::Free);
  tickets_.assign(total_slots, 0);
  metas_.assign(total_slots, FrameMeta{});
  ready_.assign(static_cast<size_t>(slots), -1);
  slot_data_.resize(total_slots);
  for (int i = 0; i < total_slots; ++i) {
    slot_data_[i] = arena_->data() + base + slot_bytes_ * static_cast<size_t>(i);
  }
}

FrameRing::~FrameRing() { close(); }

void FrameRing::check_open_locked() const { RE_CHECK(!closed_, Closed, "the frame ring is closed"); }

void FrameRing::check_held_locked(int slot, uint64_t ticket, const char* action) const {
  const bool valid = slot >= 0 && slot < static_cast<int>(states_.size());
  RE_CHECK(valid && states_[slot] == SlotState::Writing && tickets_[slot] == ticket, StateError, "cannot ", action,
           " slot ", slot, ": it is not acquired (already committed or aborted, or from another ring)");
}

int FrameRing::find_free_locked() const {
  for (int i = 0; i < slots_; ++i) {
    if (states_[i] == SlotState::Free) return i;
  }
  return -1;
}

AcquiredSlot FrameRing::acquire(int64_t width, int64_t height, int64_t timeout_ns) {
  stash_->rethrow_if_set();
  const int64_t t_start = now_ns();
  std::unique_lock<std::mutex> lock(mutex_);
  return acquire_locked(lock, width, height, timeout_ns, t_start);
}

bool FrameRing::try_acquire(int64_t width, int64_t height, AcquiredSlot& out) {
  stash_->rethrow_if_set();
  const int64_t t_start = now_ns();
  std::unique_lock<std::mutex> lock(mutex_);
  if (policy_ == RingPolicy::Block && !closed_ && writing_ < 0 && find_free_locked() < 0) return false;
  out = acquire_locked(lock, width, height, -1, t_start);
  return true;
}

AcquiredSlot FrameRing::acquire_locked(std::unique_lock<std::mutex>& lock, int64_t width, int64_t height,
                                       int64_t timeout_ns, int64_t t_start) {
  check_open_locked();
  RE_CHECK(width > 0 && height > 0, FrameError, "frame size must be positive, got ", width, "x", height);
  RE_CHECK(width <= max_width_ && height <= max_height_, FrameError, "frame of ", width, "x", height,
           " is larger than the ring's slots of ", max_width_, "x", max_height_, " (max_width x max_height)");
  RE_CHECK(writing_ < 0, StateError, "slot ", writing_,
           " is still acquired; commit or abort it before acquiring another (a ring has one producer)");

  int slot = find_free_locked();
  bool dropping = false;
  if (slot < 0) {
    switch (policy_) {
      case RingPolicy::Block: {
        auto has_free = [&] { return closed_ || find_free_locked() >= 0; };
        if (timeout_ns < 0) {
          free_cv_.wait(lock, has_free);
        } else if (!free_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), has_free)) {
          stats_->counters.block_timeouts.fetch_add(1, std::memory_order_relaxed);
          RE_THROW(Timeout, "no free frame slot within ", milliseconds_text(timeout_ns), " (ring of ", slots_,
                   " slots, policy block): the encoder is behind or stopped");
        }
        check_open_locked();
        slot = find_free_locked();
        break;
      }
      case RingPolicy::DropOldest:
        // At most one slot is written (this one) and one encoded, so with >= 2 slots one is ready.
        slot = ready_[ready_head_];
        ready_head_ = (ready_head_ + 1) % static_cast<int>(slots_);
        --ready_size_;
        stats_->counters.frames_dropped_oldest.fetch_add(1, std::memory_order_relaxed);
        break;
      case RingPolicy::DropNewest:
        slot = scratch_;
        dropping = true;
        break;
    }
  }
  states_[slot] = SlotState::Writing;
  tickets_[slot] = next_ticket_++;
  writing_ = slot;
  FrameMeta& meta = metas_[slot];
  meta.width = width;
  meta.height = height;
  meta.t_acquire_ns = now_ns();
  stats_->record(Latency::Acquire, meta.t_acquire_ns - t_start);
  return AcquiredSlot{slot, tickets_[slot], slot_data_[slot], width, height, dropping, meta.t_acquire_ns};
}

int64_t FrameRing::commit(int slot, uint64_t ticket, int64_t frame_index, int64_t pts_ns) {
  stash_->rethrow_if_set();
  std::unique_lock<std::mutex> lock(mutex_);
  check_open_locked();
  check_held_locked(slot, ticket, "commit");
  FrameMeta& meta = metas_[slot];
  meta.t_commit_ns = now_ns();
  meta.pts_ns = pts_ns < 0 ? meta.t_commit_ns : pts_ns;
  meta.frame_index = frame_index < 0 ? next_frame_index_ : frame_index;
  next_frame_index_ = meta.frame_index + 1;
  writing_ = -1;
  stats_->counters.frames_committed.fetch_add(1, std::memory_order_relaxed);
  if (slot == scratch_) {
    states_[slot] = SlotState::Free;
    stats_->counters.frames_dropped_newest.fetch_add(1, std::memory_order_relaxed);
    return meta.frame_index;
  }
  states_[slot] = SlotState::Ready;
  ready_[(ready_head_ + ready_size_) % static_cast<int>(slots_)] = slot;
  ++ready_size_;
  events_.fetch_add(1, std::memory_order_release);
  const int64_t committed = meta.frame_index;
  // Note: a running encoder finds the slot at its next take() without a wake-up; a sleeping one is
  // woken after the unlock, so it does not wake only to block on the mutex this thread still holds.
  const bool wake = consumer_waiting_;
  lock.unlock();
  if (wake) {
    stats_->counters.encoder_wakeups.fetch_add(1, std::memory_order_relaxed);
    ready_cv_.notify_one();
  }
  return committed;
}

void FrameRing::abort(int slot, uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open_locked();
  check_held_locked(slot, ticket, "abort");
  states_[slot] = SlotState::Free;
  writing_ = -1;
  stats_->counters.frames_aborted.fetch_add(1, std::memory_order_relaxed);
  free_cv_.notify_one();
}

int64_t FrameRing::write(const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides,
                         int64_t frame_index, int64_t pts_ns, int64_t timeout_ns) {
  const AcquiredSlot acquired = acquire(width, height, timeout_ns);
  // A frame that drop_newest refuses is counted at commit; copying it would be wasted work.
  if (!acquired.dropping) {
    const int64_t t_copy = now_ns();
    copy_frame(acquired.data, src, width, height, strides);
    stats_->record(Latency::Copy, now_ns() - t_copy);
  }
  return commit(acquired.slot, acquired.ticket, frame_index, pts_ns);
}

int64_t FrameRing::write_paced(const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides,
                               FramePacer& pacer, int64_t timeout_ns) {
  const PaceDecision decision = pacer.next_frame(now_ns());
  if (decision.wait_ns > 0) pacer.wait_until(decision.pts_ns);
  const int64_t started = now_ns();
  const int64_t index = write(src, width, height, strides, -1, decision.pts_ns, timeout_ns);
  pacer.record_commit(started, now_ns(), decision.pts_ns);
  return index;
}

int FrameRing::take(const std::atomic<bool>& cancel) {
  std::unique_lock<std::mutex> lock(mutex_);
  int64_t idle_from = -1;  // when take() found nothing ready: the wait it adapts its spinning to
  if (ready_size_ == 0 && !closed_ && !cancel.load()) {
    idle_from = now_ns();
    if (spin_next_) {
      const uint64_t seen = events_.load(std::memory_order_relaxed);
      lock.unlock();
      spin_until(idle_from + spin_ns_, [&] { return event_since(seen, cancel); });
      lock.lock();
    }
  }
  int misses = 0;
  while (ready_size_ == 0 && !closed_ && !cancel.load()) {
    const ExpectedCommit expected = misses < kMaxMisses ? expected_commit(now_ns()) : ExpectedCommit{};
    if (expected.at_ns >= 0) {
      waited_for_ns_ = expected.at_ns;
      waited_period_ns_ = expected.period_ns;
      const uint64_t seen = events_.load(std::memory_order_relaxed);
      wait_around_expected(lock, expected, cancel);
      if (ready_size_ == 0 && events_.load(std::memory_order_relaxed) == seen && now_ns() >= expected.at_ns) {
        ++misses;
      }
      continue;
    }
    consumer_waiting_ = true;
    ready_cv_.wait(lock);
    consumer_waiting_ = false;
  }
  if (closed_ || cancel.load()) return -1;
  const int slot = ready_[ready_head_];
  ready_head_ = (ready_head_ + 1) % static_cast<int>(slots_);
  --ready_size_;
  states_[slot] = SlotState::Encoding;
  ++encoding_;
  if (idle_from >= 0) spin_next_ = metas_[slot].t_commit_ns - idle_from < spin_ns_;
  note_commit(metas_[slot].t_commit_ns);
  return slot;
}

void FrameRing::note_commit(int64_t t_commit_ns) {
  if (waited_for_ns_ >= 0) {
    // How late the commit came, to the nearest expected time (a window it missed may be one behind).
    const int64_t half = waited_period_ns_ / 2;
    int64_t error = (t_commit_ns - waited_for_ns_ + half) % waited_period_ns_;
    if (error < 0) error += waited_period_ns_;
    errors_[next_error_] = error - half;
    next_error_ = (next_error_ + 1) % kPeriods;
    errors_seen_ = std::min(errors_seen_ + 1, kPeriods);
    waited_for_ns_ = -1;
  }
  if (last_commit_ns_ >= 0 && t_commit_ns > last_commit_ns_) {
    intervals_[next_interval_] = t_commit_ns - last_commit_ns_;
    next_interval_ = (next_interval_ + 1) % kPeriods;
  }
  last_commit_ns_ = t_commit_ns;
}

FrameRing::ExpectedCommit FrameRing::expected_commit(int64_t now) const {
  if (spin_ns_ == 0 || last_commit_ns_ < 0) return {};
  // The period: the median of the shortest intervals (those under 1.5x the shortest), so that one late
  // commit (a short interval after it) does not shift it, and a producer that commits at some ticks
  // of its clock only (every 1st and 2nd of 3) is expected at each tick.
  int64_t sorted[kPeriods];
  for (int i = 0; i < kPeriods; ++i) {
    if (intervals_[i] == 0) return {};  // too few commits to know their rate
    sorted[i] = intervals_[i];
  }
  std::sort(sorted, sorted + kPeriods);
  int cluster = 1;
  while (cluster < kPeriods && sorted[cluster] * 2 < sorted[0] * 3) ++cluster;
  const int64_t period = sorted[cluster / 2];
  if (period < kMinPeriodNs || period > kMaxPeriodNs) return {};
  // The window: as early as the earliest and as late as the latest of the last commits came to theirs.
  int64_t early = 0, late = 0;
  for (int i = 0; i < errors_seen_; ++i) {
    early = std::min(early, errors_[i]);
    late = std::max(late, errors_[i]);
  }
  const int64_t lead = std::min(kMaxLeadNs, kWakeMarginNs - early);
  const int64_t tail = std::min(kMaxTailNs, late + kMarginNs);
  int64_t at = last_commit_ns_ + period;
  if (now >= at + tail) at += ((now - at - tail) / period + 1) * period;  // the next window not yet over
  return {at, period, at - lead, at + tail};
}

void FrameRing::wait_around_expected(std::unique_lock<std::mutex>& lock, const ExpectedCommit& expected,
                                     const std::atomic<bool>& cancel) {
  const int64_t now = now_ns();
  if (now < expected.watch_from_ns) {
    consumer_waiting_ = true;  // a commit before the window wakes it as before
    ready_cv_.wait_for(lock, std::chrono::nanoseconds(expected.watch_from_ns - now));
    consumer_waiting_ = false;
    if (ready_size_ > 0 || closed_ || cancel.load() || now_ns() < expected.watch_from_ns) return;
  }
  const uint64_t seen = events_.load(std::memory_order_relaxed);
  lock.unlock();
  poll_until(expected.watch_until_ns, kPollNs, [&] { return event_since(seen, cancel); });
  lock.lock();
}

void FrameRing::release(int slot) {
  std::lock_guard<std::mutex> lock(mutex_);
  states_[slot] = SlotState::Free;
  --encoding_;
  free_cv_.notify_one();
  if (ready_size_ == 0 && encoding_ == 0) idle_cv_.notify_all();
}

void FrameRing::wake_consumer() {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.fetch_add(1, std::memory_order_release);
  ready_cv_.notify_all();
}

bool FrameRing::wait_idle(int64_t timeout_ns) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto idle = [&] { return closed_ || (ready_size_ == 0 && encoding_ == 0); };
  if (timeout_ns < 0) {
    idle_cv_.wait(lock, idle);
    return true;
  }
  return idle_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), idle);
}

int64_t FrameRing::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  check_open_locked();
  const int64_t discarded = ready_size_;
  for (int i = 0; i < ready_size_; ++i) {
    states_[ready_[(ready_head_ + i) % static_cast<int>(slots_)]] = SlotState::Free;
  }
  ready_head_ = 0;
  ready_size_ = 0;
  next_frame_index_ = 0;
  stats_->counters.frames_discarded.fetch_add(static_cast<uint64_t>(discarded), std::memory_order_relaxed);
  free_cv_.notify_all();
  if (encoding_ == 0) idle_cv_.notify_all();
  return discarded;
}

void FrameRing::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  events_.fetch_add(1, std::memory_order_release);
  free_cv_.notify_all();
  ready_cv_.notify_all();
  idle_cv_.notify_all();
}

bool FrameRing::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

int64_t FrameRing::ready_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ready_size_;
}

}  // namespace reactor
