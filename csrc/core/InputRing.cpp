// InputRing: the slot state machine of the input path, latest/fifo reads and what the reader holds.
#include "core/InputRing.h"

#include <chrono>
#include <cstring>

#include "core/Clock.h"
#include "core/Error.h"

namespace reactor {

namespace {

constexpr int64_t kMaxSlots = 1024;
constexpr int64_t kMaxDimension = 65500;
constexpr size_t kSlotAlignment = 4096;

}  // namespace

InputRing::InputRing(int64_t slots, int64_t max_width, int64_t max_height)
    : slots_(slots), max_width_(max_width), max_height_(max_height) {
  RE_CHECK(slots >= 2 && slots <= kMaxSlots, InvalidArgument, "an input ring needs between 2 and ", kMaxSlots,
           " slots, got ", slots);
  RE_CHECK(max_width > 0 && max_height > 0, InvalidArgument,
           "input ring max_width and max_height must be positive, got ", max_width, "x", max_height);
  RE_CHECK(max_width <= kMaxDimension && max_height <= kMaxDimension, InvalidArgument, "input ring max size ",
           max_width, "x", max_height, " exceeds ", kMaxDimension, " pixels a side");
  const size_t frame_bytes = static_cast<size_t>(max_width) * static_cast<size_t>(max_height) * 3;
  slot_bytes_ = (frame_bytes + kSlotAlignment - 1) / kSlotAlignment * kSlotAlignment;
  // Read by Python and written by the CPU only: prefaulted, neither locked nor CUDA-registered.
  arena_ = std::make_shared<HostArena>(static_cast<int64_t>(slot_bytes_ * static_cast<size_t>(slots)),
                                       ArenaOptions{false, false, true});
  states_.assign(static_cast<size_t>(slots), SlotState::Free);
  metas_.assign(static_cast<size_t>(slots), InputMeta{});
  epochs_.assign(static_cast<size_t>(slots), 0);
  ready_.assign(static_cast<size_t>(slots), -1);
  slot_data_.resize(static_cast<size_t>(slots));
  for (int i = 0; i < slots; ++i) slot_data_[i] = arena_->data() + slot_bytes_ * static_cast<size_t>(i);
}

InputRing::~InputRing() { close(); }

void InputRing::check_size(int64_t width, int64_t height) {
  RE_CHECK(width > 0 && height > 0, FrameError, "frame size must be positive, got ", width, "x", height);
  if (width > max_width_ || height > max_height_) {
    counters_.frames_refused.fetch_add(1, std::memory_order_relaxed);
    RE_THROW(FrameError, "input frame of ", width, "x", height, " is larger than the input slots of ", max_width_, "x",
             max_height_, " (input_max_width x input_max_height)");
  }
}

int InputRing::take_ready_front_locked() {
  const int slot = ready_[ready_head_];
  ready_head_ = (ready_head_ + 1) % static_cast<int>(slots_);
  --ready_size_;
  return slot;
}

int InputRing::take_ready_back_locked() {
  --ready_size_;
  return ready_[(ready_head_ + ready_size_) % static_cast<int>(slots_)];
}

void InputRing::free_slot_locked(int slot) { states_[slot] = SlotState::Free; }

void InputRing::check_slot_locked(int slot, const char* action) const {
  const bool valid = slot >= 0 && slot < slots_ && states_[slot] == SlotState::Writing;
  RE_CHECK(valid, StateError, "cannot ", action, " input slot ", slot, ": it is not being written");
}

int InputRing::acquire(int64_t width, int64_t height) {
  check_size(width, height);
  std::unique_lock<std::mutex> lock(mutex_);
  int slot = -1;
  while (true) {
    RE_CHECK(!closed_, Closed, "the input ring is closed");
    for (int i = 0; i < slots_; ++i) {
      if (states_[i] == SlotState::Free) {
        slot = i;
        break;
      }
    }
    if (slot >= 0) break;
    if (ready_size_ > 0) {
      slot = take_ready_front_locked();
      counters_.frames_dropped.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    // Every other slot is held by the reader (at most slots - 1) or written by another producer.
    slot_cv_.wait(lock);
  }
  states_[slot] = SlotState::Writing;
  epochs_[slot] = epoch_;
  metas_[slot].width = width;
  metas_[slot].height = height;
  return slot;
}

int64_t InputRing::commit(int slot, int64_t capture_ns, int64_t arrival_ns, bool keyframe) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_slot_locked(slot, "commit");
  if (closed_ || epochs_[slot] != epoch_) {
    // Closed, or reset since the acquire: this frame belongs to a session that is over.
    free_slot_locked(slot);
    slot_cv_.notify_one();
    return -1;
  }
  InputMeta& meta = metas_[slot];
  meta.ready_ns = now_ns();
  meta.arrival_ns = arrival_ns < 0 ? meta.ready_ns : arrival_ns;
  meta.capture_ns = capture_ns < 0 ? meta.arrival_ns : capture_ns;
  meta.keyframe = keyframe;
  meta.index = next_index_++;
  histograms_[static_cast<int>(InputLatency::ArrivalToReady)].record(meta.ready_ns - meta.arrival_ns);
  states_[slot] = SlotState::Ready;
  ready_[(ready_head_ + ready_size_) % static_cast<int>(slots_)] = slot;
  ++ready_size_;
  counters_.frames_in.fetch_add(1, std::memory_order_relaxed);
  ready_cv_.notify_one();
  slot_cv_.notify_one();  // a producer waiting for a slot can recycle this one
  return meta.index;
}

void InputRing::abort(int slot) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_slot_locked(slot, "abort");
  free_slot_locked(slot);
  slot_cv_.notify_one();
}

int64_t InputRing::write(const uint8_t* src, int64_t width, int64_t height, const FrameStrides& strides,
                         int64_t capture_ns, int64_t arrival_ns) {
  if (arrival_ns < 0) arrival_ns = now_ns();
  const int slot = acquire(width, height);
  uint8_t* dst = slot_data_[slot];
  const size_t row_bytes = static_cast<size_t>(width) * 3;
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = src + y * strides.row;
    if (strides.pixel == 3 && strides.channel == 1) {
      std::memcpy(dst, row, row_bytes);
    } else {
      for (int64_t x = 0; x < width; ++x) {
        const uint8_t* pixel = row + x * strides.pixel;
        dst[3 * x] = pixel[0];
        dst[3 * x + 1] = pixel[strides.channel];
        dst[3 * x + 2] = pixel[2 * strides.channel];
      }
    }
    dst += row_bytes;
  }
  return commit(slot, capture_ns, arrival_ns, true);
}

int InputRing::read(InputRead* out, int max_out, bool latest, int64_t timeout_ns, bool* woken) {
  std::unique_lock<std::mutex> lock(mutex_);
  const int hold_limit = static_cast<int>(slots_) - 1;
  // Nothing could be handed out until release_held: no wait (the caller must not retry either).
  if (woken != nullptr) *woken = max_out <= 0 || held_ >= hold_limit;
  if (max_out <= 0 || held_ >= hold_limit) return 0;
  if (ready_size_ == 0 && timeout_ns != 0) {
    auto done = [&] { return ready_size_ > 0 || closed_ || wake_pending_; };
    if (timeout_ns < 0) {
      ready_cv_.wait(lock, done);
    } else {
      ready_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), done);
    }
    if (woken != nullptr) *woken = closed_ || wake_pending_;
    wake_pending_ = false;
  }
  if (ready_size_ == 0) return 0;
  const int64_t t_read = now_ns();
  int count = 0;
  auto hand_out = [&](int slot) {
    states_[slot] = SlotState::Held;
    ++held_;
    current_ = slot;  // the previous current stays held until release_held
    out[count].slot = slot;
    out[count].meta = metas_[slot];
    out[count].data = slot_data_[slot];
    ++count;
    histograms_[static_cast<int>(InputLatency::ReadyToRead)].record(t_read - metas_[slot].ready_ns);
  };
  if (latest) {
    hand_out(take_ready_back_locked());
    const int skipped = ready_size_;
    while (ready_size_ > 0) free_slot_locked(take_ready_front_locked());
    ready_head_ = 0;
    if (skipped > 0) {
      counters_.frames_skipped.fetch_add(static_cast<uint64_t>(skipped), std::memory_order_relaxed);
      slot_cv_.notify_all();
    }
  } else {
    while (count < max_out && ready_size_ > 0 && held_ < hold_limit) hand_out(take_ready_front_locked());
  }
  counters_.frames_read.fetch_add(static_cast<uint64_t>(count), std::memory_order_relaxed);
  return count;
}

bool InputRing::current(InputRead* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (current_ < 0) return false;
  out->slot = current_;
  out->meta = metas_[current_];
  out->data = slot_data_[current_];
  return true;
}

void InputRing::release_held() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (held_ <= (current_ >= 0 ? 1 : 0)) return;
  for (int i = 0; i < slots_; ++i) {
    if (states_[i] == SlotState::Held && i != current_) free_slot_locked(i);
  }
  held_ = current_ >= 0 ? 1 : 0;
  slot_cv_.notify_all();
}

int64_t InputRing::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t dropped = ready_size_ + held_;
  for (int i = 0; i < slots_; ++i) {
    if (states_[i] == SlotState::Ready || states_[i] == SlotState::Held) free_slot_locked(i);
  }
  ready_head_ = 0;
  ready_size_ = 0;
  held_ = 0;
  current_ = -1;
  ++epoch_;
  next_index_ = 0;
  wake_pending_ = false;
  slot_cv_.notify_all();
  return dropped;
}

void InputRing::wake() {
  std::lock_guard<std::mutex> lock(mutex_);
  wake_pending_ = true;
  ready_cv_.notify_all();
}

void InputRing::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  ready_cv_.notify_all();
  slot_cv_.notify_all();
}

bool InputRing::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

int64_t InputRing::ready_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ready_size_;
}

int64_t InputRing::held_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_;
}

}  // namespace reactor
