// AudioRing: the circular sample buffer, pts anchors per write, and the level-like eventfd.
#include "core/AudioRing.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/Clock.h"
#include "core/Error.h"

namespace reactor {

namespace {
constexpr int64_t kMaxRate = 768'000;
constexpr int64_t kMaxChannels = 32;
constexpr int64_t kMaxCapacityFrames = int64_t{1} << 26;
}  // namespace

AudioRing::AudioRing(int64_t rate, int64_t channels, int64_t capacity_frames, int64_t notify_frames)
    : rate_(rate), channels_(channels), capacity_(capacity_frames), notify_(std::max<int64_t>(notify_frames, 1)) {
  RE_CHECK(rate >= 1 && rate <= kMaxRate, InvalidArgument, "audio rate must be between 1 and ", kMaxRate, " Hz, got ",
           rate);
  RE_CHECK(channels >= 1 && channels <= kMaxChannels, InvalidArgument, "audio channels must be between 1 and ",
           kMaxChannels, ", got ", channels);
  RE_CHECK(capacity_frames >= 1 && capacity_frames <= kMaxCapacityFrames, InvalidArgument,
           "audio ring capacity_frames must be between 1 and ", kMaxCapacityFrames, ", got ", capacity_frames);
  RE_CHECK(notify_frames >= 0 && notify_frames <= capacity_frames, InvalidArgument,
           "audio ring notify_frames must be between 0 and capacity_frames (", capacity_frames, "), got ",
           notify_frames);
  buffer_.assign(static_cast<size_t>(capacity_frames * channels), 0);
  anchors_.assign(kAnchors, Anchor{});
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  RE_CHECK(event_fd_ >= 0, Error, "eventfd failed: ", std::strerror(errno));
}

AudioRing::~AudioRing() {
  if (event_fd_ >= 0) ::close(event_fd_);
}

int64_t AudioRing::pts_at_locked(int64_t frame) const {
  if (anchor_size_ == 0) return -1;
  // The newest anchor at or before frame; before the oldest one, extrapolated back from it.
  int pick = anchor_head_;
  for (int i = 0; i < anchor_size_; ++i) {
    const int index = (anchor_head_ + i) % kAnchors;
    if (anchors_[index].frame > frame) break;
    pick = index;
  }
  const Anchor& anchor = anchors_[pick];
  return anchor.pts_ns + (frame - anchor.frame) * 1'000'000'000 / rate_;
}

void AudioRing::drop_anchors_before_locked(int64_t frame) {
  while (anchor_size_ > 1 && anchors_[(anchor_head_ + 1) % kAnchors].frame <= frame) {
    anchor_head_ = (anchor_head_ + 1) % kAnchors;
    --anchor_size_;
  }
}

void AudioRing::update_event_locked() {
  const bool want = closed_ || written_ - read_ >= notify_;
  if (want && !event_set_) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(event_fd_, &one, sizeof(one));
    event_set_ = true;
  } else if (!want && event_set_) {
    uint64_t value = 0;
    [[maybe_unused]] ssize_t got = ::read(event_fd_, &value, sizeof(value));
    event_set_ = false;
  }
}

int64_t AudioRing::write(const int16_t* samples, int64_t frames, int64_t pts_ns) {
  RE_CHECK(frames >= 0, InvalidArgument, "frames must be >= 0, got ", frames);
  if (pts_ns < 0) pts_ns = now_ns();
  std::lock_guard<std::mutex> lock(mutex_);
  RE_CHECK(!closed_, Closed, "the audio ring is closed");
  counters_.writes.fetch_add(1, std::memory_order_relaxed);
  counters_.frames_in.fetch_add(static_cast<uint64_t>(frames), std::memory_order_relaxed);
  if (frames == 0) return 0;
  // More than the ring holds: only the last capacity frames can stay.
  const int64_t skip = std::max<int64_t>(0, frames - capacity_);
  const int64_t n = frames - skip;
  const int16_t* src = samples + skip * channels_;
  const int64_t overwritten = std::max<int64_t>(0, written_ - read_ + n - capacity_);
  read_ += overwritten;
  const int64_t start = written_ % capacity_;
  const int64_t first = std::min(n, capacity_ - start);
  std::memcpy(buffer_.data() + start * channels_, src, static_cast<size_t>(first * channels_) * sizeof(int16_t));
  if (n > first) {
    std::memcpy(buffer_.data(), src + first * channels_,
                static_cast<size_t>((n - first) * channels_) * sizeof(int16_t));
  }
  if (anchor_size_ == kAnchors) {  // the oldest goes; frames before the next are extrapolated
    anchor_head_ = (anchor_head_ + 1) % kAnchors;
    --anchor_size_;
  }
  anchors_[(anchor_head_ + anchor_size_) % kAnchors] = Anchor{written_, pts_ns + skip * 1'000'000'000 / rate_};
  ++anchor_size_;
  written_ += n;
  drop_anchors_before_locked(read_);
  const int64_t dropped = skip + overwritten;
  if (dropped > 0) counters_.frames_dropped.fetch_add(static_cast<uint64_t>(dropped), std::memory_order_relaxed);
  update_event_locked();
  data_cv_.notify_all();
  return dropped;
}

std::pair<int64_t, int64_t> AudioRing::read(int16_t* out, int64_t max_frames, int64_t min_frames, int64_t timeout_ns,
                                            bool* woken) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (woken != nullptr) *woken = max_frames <= 0;  // no room: nothing to wait for
  if (max_frames <= 0) return {0, -1};
  const int64_t wanted = std::clamp<int64_t>(min_frames, 1, std::min(max_frames, capacity_));
  if (written_ - read_ < wanted && timeout_ns != 0) {
    auto done = [&] { return written_ - read_ >= wanted || closed_ || wake_pending_; };
    if (timeout_ns < 0) {
      data_cv_.wait(lock, done);
    } else {
      data_cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), done);
    }
    if (woken != nullptr) *woken = closed_ || wake_pending_;
    wake_pending_ = false;
  }
  const int64_t n = std::min(written_ - read_, max_frames);
  if (n <= 0) return {0, -1};
  const int64_t pts = pts_at_locked(read_);
  const int64_t start = read_ % capacity_;
  const int64_t first = std::min(n, capacity_ - start);
  std::memcpy(out, buffer_.data() + start * channels_, static_cast<size_t>(first * channels_) * sizeof(int16_t));
  if (n > first) {
    std::memcpy(out + first * channels_, buffer_.data(),
                static_cast<size_t>((n - first) * channels_) * sizeof(int16_t));
  }
  read_ += n;
  drop_anchors_before_locked(read_);
  counters_.frames_out.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  counters_.reads.fetch_add(1, std::memory_order_relaxed);
  update_event_locked();
  return {n, pts};
}

int64_t AudioRing::available() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return written_ - read_;
}

void AudioRing::clear_event() {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t value = 0;
  [[maybe_unused]] ssize_t got = ::read(event_fd_, &value, sizeof(value));
  event_set_ = false;
  update_event_locked();  // still enough buffered (or closed): readable again
}

int64_t AudioRing::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t dropped = written_ - read_;
  read_ = written_;
  anchor_head_ = 0;
  anchor_size_ = 0;
  wake_pending_ = false;
  update_event_locked();
  return dropped;
}

void AudioRing::wake() {
  std::lock_guard<std::mutex> lock(mutex_);
  wake_pending_ = true;
  data_cv_.notify_all();
}

void AudioRing::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
  update_event_locked();
  data_cv_.notify_all();
}

bool AudioRing::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

}  // namespace reactor
