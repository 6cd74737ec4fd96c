// StripedJpegEncoder: the stripe hand-off, the helpers' loop, and the join of the stripes' JPEGs.
#include "core/JpegStripes.h"

#include <sched.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "core/Clock.h"
#include "core/Error.h"
#include "core/Spin.h"

namespace reactor {

namespace {

constexpr int64_t kMaxRestartMcus = 65535;  // the DRI marker's 16 bits
// How long the caller spins for the helpers' stripes before it sleeps: they started a wake-up later
// than its own stripe, so they usually finish within tens of µs of it.
constexpr int64_t kJoinSpinNs = 200'000;
constexpr uint8_t kSos = 0xDA;
constexpr uint8_t kEoi = 0xD9;
constexpr uint8_t kRst0 = 0xD0;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The offset of the first header segment (after SOI) whose marker satisfies `match`, looking no
// further than SOS. Our own encoder wrote these bytes, so a malformed header is a bug: EncodeError.
template <typename Match>
size_t find_segment(const uint8_t* jpeg, size_t size, Match match) {
  size_t pos = 2;
  while (pos + 4 <= size) {
    RE_CHECK(jpeg[pos] == 0xFF, EncodeError, "a JPEG stripe's header is malformed at byte ", pos);
    const uint8_t marker = jpeg[pos + 1];
    if (match(marker)) return pos;
    RE_CHECK(marker != kSos, EncodeError, "a JPEG stripe's header lacks the marker sought");
    pos += 2 + (static_cast<size_t>(jpeg[pos + 2]) << 8 | jpeg[pos + 3]);
  }
  RE_THROW(EncodeError, "a JPEG stripe ends inside its header");
}

size_t segment_end(const uint8_t* jpeg, size_t pos) {
  return pos + 2 + (static_cast<size_t>(jpeg[pos + 2]) << 8 | jpeg[pos + 3]);
}

}  // namespace

StripedJpegEncoder::StripedJpegEncoder(int quality, Subsampling subsampling, int threads, ThreadPolicy policy)
    : threads_(threads) {
  RE_CHECK(threads >= 1 && threads <= kMaxThreads, InvalidArgument, "JPEG threads must be between 1 and ", kMaxThreads,
           ", got ", threads);
  for (int i = 0; i < threads; ++i) encoders_.push_back(std::make_unique<JpegEncoder>(quality, subsampling));
  CPU_ZERO(&allowed_cpus_);
  if (sched_getaffinity(0, sizeof(allowed_cpus_), &allowed_cpus_) != 0) CPU_ZERO(&allowed_cpus_);
  try {
    for (int i = 1; i < threads; ++i) {
      helpers_.emplace_back([this, i] { helper_loop(i); });
      // Named and scheduled here, not in helper_loop, so both hold when the constructor returns.
      char name[16];  // a thread name's limit, the terminating 0 included
      std::snprintf(name, sizeof(name), "reactor-jpeg-%d", i);
      pthread_setname_np(helpers_.back().native_handle(), name);
      const int error = apply_thread_policy(helpers_.back().native_handle(), policy);
      if (helper_policy_error_ == 0) helper_policy_error_ = error;
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (auto& helper : helpers_) helper.join();
    throw;
  }
}

StripedJpegEncoder::~StripedJpegEncoder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& helper : helpers_) helper.join();
}

size_t StripedJpegEncoder::max_bytes(int64_t width, int64_t height) const {
  // One header instead of S, plus an RSTn marker (2 bytes) between stripes.
  return encoders_[0]->max_bytes(width, height) + 2 * kMaxThreads;
}

void StripedJpegEncoder::reserve(int64_t max_width, int64_t max_height) {
  encoders_[0]->reserve(max_width, max_height);
  reserved_width_ = max_width;
  reserved_height_ = max_height;
  if (threads_ == 1) return;
  // Every stripe after the first is at most half the frame's MCU rows, whatever the stripe count.
  const int64_t half_rows = ceil_div(ceil_div(max_height, encoders_[0]->mcu_height()), 2) * encoders_[0]->mcu_height();
  const int64_t stripe_height = std::min(max_height, half_rows);
  for (int i = 1; i < threads_; ++i) encoders_[i]->reserve(max_width, stripe_height);
  stripes_.assign(static_cast<size_t>(threads_), Stripe{});
  for (int i = 1; i < threads_; ++i) stripes_[i].buffer.resize(encoders_[0]->max_bytes(max_width, stripe_height));
}

int64_t StripedJpegEncoder::stripe_mcu_rows(int64_t width, int64_t height) const {
  return ceil_div(ceil_div(height, encoders_[0]->mcu_height()), stripes_for(width, height));
}

int StripedJpegEncoder::stripes_for(int64_t width, int64_t height) const {
  if (threads_ == 1 || width > reserved_width_ || height > reserved_height_) return 1;
  const int64_t mcu_rows = ceil_div(height, encoders_[0]->mcu_height());
  const int64_t mcus_per_row = ceil_div(width, encoders_[0]->mcu_width());
  const int64_t most = std::min<int64_t>({threads_, width * height / kMinStripePixels, mcu_rows});
  if (most < 2) return 1;
  const int64_t rows = ceil_div(mcu_rows, most);
  if (rows * mcus_per_row > kMaxRestartMcus) return 1;
  // So that no stripe is empty: 5 MCU rows in 4 stripes are stripes of 2, 2 and 1.
  return static_cast<int>(ceil_div(mcu_rows, rows));
}

size_t StripedJpegEncoder::encode(const uint8_t* rgb, int64_t width, int64_t height, uint8_t* dst, size_t capacity) {
  const int stripes = stripes_for(width, height);
  if (stripes == 1) return encoders_[0]->encode(rgb, width, height, dst, capacity);
  Job job;
  job.rgb = rgb;
  job.width = width;
  job.height = height;
  job.stripes = stripes;
  const int64_t rows = stripe_mcu_rows(width, height);
  job.stripe_rows = rows * encoders_[0]->mcu_height();
  job.restart_mcus = rows * ceil_div(width, encoders_[0]->mcu_width());
  uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = job;
    generation = ++generation_;
    pending_.store(stripes - 1, std::memory_order_relaxed);
    claims_.store(generation << 16 | 1, std::memory_order_release);
  }
  keep_helpers_off(sched_getcpu());
  work_cv_.notify_all();

  size_t size0 = 0;
  std::exception_ptr failure;
  try {
    size0 = encoders_[0]->encode(rgb, width, job.stripe_rows, dst, capacity, job.restart_mcus);
  } catch (...) {
    failure = std::current_exception();
  }
  // The stripes no helper has started yet are the caller's; after a failure they are only counted.
  for (int stripe; (stripe = claim(generation, stripes)) >= 0;) {
    if (failure) {
      finish_stripe();
    } else {
      encode_stripe(*encoders_[0], job, stripe);
    }
  }
  wait_for_stripes();
  if (failure) std::rethrow_exception(failure);
  for (int i = 1; i < stripes; ++i) {
    RE_CHECK(!stripes_[i].failed, EncodeError, stripes_[i].error);
  }
  return join(job, dst, size0, capacity);
}

void StripedJpegEncoder::keep_helpers_off(int cpu) noexcept {
  if (cpu < 0 || cpu == helpers_kept_off_ || cpu >= CPU_SETSIZE) return;
  helpers_kept_off_ = cpu;
  cpu_set_t mask = allowed_cpus_;
  CPU_CLR(cpu, &mask);
  if (CPU_COUNT(&mask) == 0) return;  // one CPU: nowhere else to go
  for (auto& helper : helpers_) pthread_setaffinity_np(helper.native_handle(), sizeof(mask), &mask);
}

int StripedJpegEncoder::claim(uint64_t generation, int stripes) noexcept {
  uint64_t current = claims_.load(std::memory_order_acquire);
  for (;;) {
    if (current >> 16 != generation) return -1;
    const int stripe = static_cast<int>(current & 0xFFFF);
    if (stripe >= stripes) return -1;
    if (claims_.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel)) return stripe;
  }
}

void StripedJpegEncoder::encode_stripe(JpegEncoder& encoder, const Job& job, int stripe) noexcept {
  Stripe& out = stripes_[stripe];
  const int64_t first = stripe * job.stripe_rows;
  const int64_t count = std::min(job.stripe_rows, job.height - first);
  try {
    out.size = encoder.encode(job.rgb + first * job.width * 3, job.width, count, out.buffer.data(), out.buffer.size(),
                              job.restart_mcus);
    out.failed = false;
  } catch (const std::exception& e) {
    out.failed = true;
    try {
      out.error = std::string("JPEG stripe ") + std::to_string(stripe) + ": " + e.what();
    } catch (...) {  // no memory for the message: the flag still fails the frame
    }
  }
  finish_stripe();
}

void StripedJpegEncoder::finish_stripe() noexcept {
  if (pending_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (caller_waiting_) done_cv_.notify_one();
}

void StripedJpegEncoder::wait_for_stripes() noexcept {
  if (spin_until(now_ns() + kJoinSpinNs, [&] { return pending_.load(std::memory_order_acquire) == 0; })) return;
  std::unique_lock<std::mutex> lock(mutex_);
  caller_waiting_ = true;
  done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  caller_waiting_ = false;
}

size_t StripedJpegEncoder::join(const Job& job, uint8_t* dst, size_t size0, size_t capacity) const {
  const size_t sof = find_segment(dst, size0, [](uint8_t m) { return m >= 0xC0 && m <= 0xC2; });
  dst[sof + 5] = static_cast<uint8_t>(job.height >> 8);  // SOF: length (2), precision (1), height (2)
  dst[sof + 6] = static_cast<uint8_t>(job.height & 0xFF);
  RE_CHECK(size0 >= 4 && dst[size0 - 2] == 0xFF && dst[size0 - 1] == kEoi, EncodeError,
           "a JPEG stripe does not end in EOI");
  size_t out = size0 - 2;
  for (int i = 1; i < job.stripes; ++i) {
    const Stripe& stripe = stripes_[i];
    const uint8_t* jpeg = stripe.buffer.data();
    const size_t start = segment_end(jpeg, find_segment(jpeg, stripe.size, [](uint8_t m) { return m == kSos; }));
    RE_CHECK(start + 2 <= stripe.size, EncodeError, "a JPEG stripe ends inside its header");
    const size_t data = stripe.size - 2 - start;  // the entropy-coded data, EOI left off
    RE_CHECK(out + 2 + data + 2 <= capacity, EncodeError, "the JPEG of a ", job.width, "x", job.height,
             " frame does not fit in the packet buffer of ", capacity, " bytes");
    dst[out++] = 0xFF;
    dst[out++] = static_cast<uint8_t>(kRst0 + (i - 1) % 8);
    std::memcpy(dst + out, jpeg + start, data);
    out += data;
  }
  dst[out++] = 0xFF;
  dst[out++] = kEoi;
  return out;
}

void StripedJpegEncoder::helper_loop(int index) noexcept {
  uint64_t seen = 0;
  for (;;) {
    Job job;
    uint64_t generation = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      generation = seen = generation_;
      job = job_;
    }
    for (int stripe; (stripe = claim(generation, job.stripes)) >= 0;) encode_stripe(*encoders_[index], job, stripe);
  }
}

int64_t StripedJpegEncoder::blocks_allocated() const {
  int64_t blocks = 0;
  for (const auto& encoder : encoders_) blocks += encoder->blocks_allocated();
  return blocks;
}

}  // namespace reactor
