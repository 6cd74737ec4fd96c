// The frame loops make no heap allocation, counted: output (write -> encode -> publish -> pop ->
// release) and input (submit -> decode -> commit -> read -> release_held; the copying write; audio).
// Two counters: C++ operator new on every thread, and every libc heap call (malloc, free and the
// rest, from our code or any library) on the threads other than the test's own: the encoder's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "core/AudioRing.h"
#include "core/Decoder.h"
#include "core/Encoder.h"
#include "input_helpers.h"

namespace {
std::atomic<long> allocations{0};
std::atomic<long> libc_calls{0};  // heap calls on threads other than the test's
// Note: a thread_local of the executable itself is static TLS: reading it in malloc allocates nothing.
__attribute__((tls_model("initial-exec"))) thread_local bool t_test_thread = false;

void count_libc_call() {
  if (!t_test_thread) libc_calls.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// Note: replacing the global operator new is why this test is its own executable.
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// ASan and TSan own malloc (a definition here would clash with theirs); their allocator calls these
// hooks on every allocation and free instead.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void on_malloc(const volatile void*, size_t) { count_libc_call(); }
void on_free(const volatile void* p) {
  if (p != nullptr) count_libc_call();
}
const bool hooks_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
// Note: the hooks see malloc and free exactly, realloc as a new block and a free, and (TSan in
// gcc 12) not posix_memalign at all: a lower bound there, the exact count in the normal build.
constexpr bool kExactLibcCounts = false;
}  // namespace
#else
// glibc's malloc family, replaced as its manual allows: each counts, then forwards to glibc's own
// allocator (__libc_malloc and kin), so every library's calls land here, libjpeg's and libvpx's too.
extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);

void* malloc(size_t size) {
  count_libc_call();
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  count_libc_call();
  return __libc_calloc(count, size);
}
void* realloc(void* p, size_t size) {
  count_libc_call();
  return __libc_realloc(p, size);
}
void* reallocarray(void* p, size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(p, count * size);
}
void free(void* p) {
  if (p != nullptr) count_libc_call();
  __libc_free(p);
}
void* memalign(size_t alignment, size_t size) {
  count_libc_call();
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }
int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void* valloc(size_t size) { return memalign(static_cast<size_t>(sysconf(_SC_PAGESIZE)), size); }
void* pvalloc(size_t size) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return memalign(page, (size + page - 1) / page * page);
}
}  // extern "C"
namespace {
const bool hooks_installed = true;
constexpr bool kExactLibcCounts = true;
}  // namespace
#endif

using namespace reactor;

namespace {

struct Counts {
  long cpp = 0;   // operator new, every thread
  long libc = 0;  // libc heap calls (malloc, free, ...) on the encoder thread
};

// Every output in outputs is enabled and popped; the first is the primary.
// jpeg_threads > 1 with a frame large enough to stripe counts the stripe helpers' calls too (they are
// not the test's thread either).
Counts allocations_for_frames(std::vector<CodecKind> outputs, int frames, int64_t w = 64, int64_t h = 48,
                              int jpeg_threads = 1) {
  t_test_thread = true;  // this thread drives the ring and the queues; the encoder thread is counted
  auto ring = std::make_shared<FrameRing>(4, w, h, RingPolicy::Block);
  CodecOptions options{outputs[0], 85, Subsampling::S420};
  options.jpeg_threads = jpeg_threads;
  Encoder encoder(ring, options, 4, std::vector<CodecKind>(outputs.begin() + 1, outputs.end()));
  for (CodecKind codec : outputs) encoder.set_output_enabled(codec, true);
  std::vector<uint8_t> frame(static_cast<size_t>(w * h * 3), 128);
  const FrameStrides strides{w * 3, 3, 1};
  int64_t index = 0;
  auto one_frame = [&] {
    // A moving edge, so that VP8 codes every frame, not skipped blocks; the 30 fps pts it needs.
    frame[static_cast<size_t>(index % (w * h)) * 3] ^= 0xFF;
    ring->write(frame.data(), w, h, strides, -1, index++ * 33'333'333, 1'000'000'000);
    for (CodecKind codec : outputs) {
      const int packet = encoder.queue_for(codec)->pop(1'000'000'000);
      if (packet < 0) std::abort();
      encoder.queue_for(codec)->release(packet);
    }
    if (index % 50 == 0) encoder.request_keyframe();  // the live controls too
    if (index % 70 == 0) encoder.set_bitrate(index % 140 == 0 ? 1'000'000 : 2'000'000);
  };
  for (int i = 0; i < 10; ++i) one_frame();  // warm-up: first-use allocations are allowed
  const Counts before{allocations.load(), libc_calls.load()};
  for (int i = 0; i < frames; ++i) one_frame();
  // Every packet was popped, so the encoder thread is done with these frames.
  return {allocations.load() - before.cpp, libc_calls.load() - before.libc};
}

Counts allocations_for_frames(CodecKind codec, int frames) {
  return allocations_for_frames(std::vector<CodecKind>{codec}, frames);
}

constexpr int64_t kInW = 320, kInH = 240;
constexpr int kWarmUp = 10;

// Packets made before counting; each is submitted, decoded into the ring and read, then released.
long allocations_for_input(InputCodec codec, int frames) {
  std::vector<std::vector<uint8_t>> packets;
  if (codec == InputCodec::Vp8) {
    std::set<int> keyframes;  // periodic key frames too: same size, no new libvpx buffers
    for (int i = 60; i < frames + kWarmUp; i += 60) keyframes.insert(i);
    for (auto& e : reactor::testing::vp8_stream(kInW, kInH, frames + kWarmUp, keyframes)) packets.push_back(e.bytes);
  } else {
    for (int i = 0; i < 8; ++i) packets.push_back(reactor::testing::jpeg_frame(kInW, kInH, i).bytes);
  }
  auto ring = std::make_shared<InputRing>(4, kInW, kInH);
  Decoder decoder(ring, codec, 4, 1 << 20);
  InputRead out[2];
  auto one_frame = [&](int i) {
    const auto& packet = packets[static_cast<size_t>(i) % packets.size()];
    decoder.submit(packet.data(), packet.size(), -1, -1);
    if (!decoder.wait_idle(1'000'000'000)) std::abort();
    if (ring->read(out, 1, i % 2 == 0, 0) != 1) std::abort();  // latest and fifo reads alike
    if (decoder.counters().decode_errors.load() != 0) std::abort();
    ring->release_held();
  };
  for (int i = 0; i < kWarmUp; ++i) one_frame(i);
  const long before = allocations.load();
  for (int i = kWarmUp; i < kWarmUp + frames; ++i) one_frame(i);
  return allocations.load() - before;
}

}  // namespace

TEST(SteadyState, RawFramesMakeNoHeapAllocation) {
  const Counts counts = allocations_for_frames(CodecKind::Raw, 500);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);
}

TEST(SteadyState, I420FramesMakeNoHeapAllocation) {
  const Counts counts = allocations_for_frames(CodecKind::I420, 500);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);  // no libjpeg object per frame (tjEncodeYUV3: 34 calls a frame)
}

TEST(SteadyState, JpegFramesMakeNoHeapAllocation) {
  const Counts counts = allocations_for_frames(CodecKind::Jpeg, 500);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);  // libjpeg's pools are ours and reused (tjCompress2: 18 calls a frame)
}

TEST(SteadyState, StripedJpegFramesMakeNoHeapAllocation) {
  // 640x480 in 3 threads: 2 stripes (StripedJpegEncoder::kMinStripePixels), the helper's calls counted.
  const Counts counts = allocations_for_frames({CodecKind::Jpeg}, 200, 640, 480, 3);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);
}

TEST(SteadyState, Vp8FramesMakeNoHeapAllocation) {
  // libvpx 1.12 mallocs its buffers when the encoder opens (at construction), none per frame, key
  // frames and bitrate changes included; the RGB -> I420 step is rgb_to_jfif_i420 (before, through
  // tjEncodeYUVPlanes: 34 calls a frame). Printed too, for the benchmarks' notes.
  constexpr int kFrames = 500;
  const Counts counts = allocations_for_frames(CodecKind::Vp8, kFrames);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);
  std::printf("VP8: %.2f libc heap calls per frame on the encoder thread (%ld over %d frames)\n",
              static_cast<double>(counts.libc) / kFrames, counts.libc, kFrames);
}

TEST(SteadyState, SeveralImageOutputsMakeNoHeapAllocation) {
  const Counts counts = allocations_for_frames({CodecKind::Jpeg, CodecKind::I420, CodecKind::Raw}, 300);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);
}

TEST(SteadyState, SeveralOutputsWithVp8MakeNoHeapAllocation) {
  const Counts counts = allocations_for_frames({CodecKind::Jpeg, CodecKind::Vp8, CodecKind::I420}, 300);
  EXPECT_EQ(counts.cpp, 0);
  EXPECT_EQ(counts.libc, 0);
}

TEST(SteadyState, Vp8InputMakesNoCppHeapAllocation) {
  // libvpx sizes its frame buffers at the first key frame (malloc, not per frame).
  EXPECT_EQ(allocations_for_input(InputCodec::Vp8, 300), 0);
}

TEST(SteadyState, JpegInputMakesNoCppHeapAllocation) { EXPECT_EQ(allocations_for_input(InputCodec::Jpeg, 300), 0); }

TEST(SteadyState, CopiedInputFramesAndAudioMakeNoHeapAllocation) {
  InputRing ring(4, 64, 48);
  AudioRing audio(48000, 2, 4800, 960);
  std::vector<uint8_t> frame(64 * 48 * 3, 9);
  std::vector<int16_t> pcm(960 * 2, 3), pcm_out(960 * 2);
  InputRead out[3];
  auto one_frame = [&](int i) {
    ring.write(frame.data(), 64, 48, FrameStrides{64 * 3, 3, 1}, -1, -1);
    ring.write(frame.data(), 64, 48, FrameStrides{64 * 3, 3, 1}, -1, -1);
    if (ring.read(out, 3, i % 2 == 0, 0) < 1) std::abort();
    ring.release_held();
    audio.write(pcm.data(), 960, -1);
    if (audio.read(pcm_out.data(), 960, 960, 0).first != 960) std::abort();
  };
  for (int i = 0; i < kWarmUp; ++i) one_frame(i);
  const long before = allocations.load();
  for (int i = 0; i < 1000; ++i) one_frame(i);
  EXPECT_EQ(allocations.load() - before, 0);
}

TEST(SteadyState, TheCountersSeeAllocations) {
  const long before = allocations.load();
  auto* probe = new std::vector<int>(16);
  delete probe;
  EXPECT_GE(allocations.load() - before, 2);  // the vector and its buffer: the tests above can fail

  // libc calls of another thread are counted, the test thread's are not.
  ASSERT_TRUE(hooks_installed);
  t_test_thread = true;
  const long libc_before = libc_calls.load();
  void* volatile mine = std::malloc(64);
  std::free(mine);
  EXPECT_EQ(libc_calls.load() - libc_before, 0);
  std::thread other([] {
    t_test_thread = false;
    long last = libc_calls.load();
    auto calls = [&last] {
      const long now = libc_calls.load();
      const long delta = now - last;
      last = now;
      return delta;
    };
    void* volatile p = std::malloc(64);
    EXPECT_EQ(calls(), 1);
    p = std::realloc(p, 4096);
    EXPECT_EQ(calls(), kExactLibcCounts ? 1 : 2);
    std::free(p);
    EXPECT_EQ(calls(), 1);
    if (kExactLibcCounts) {
      void* aligned = nullptr;
      ASSERT_EQ(posix_memalign(&aligned, 64, 256), 0);
      EXPECT_EQ(calls(), 1);
      std::free(aligned);
      EXPECT_EQ(calls(), 1);
    }
  });
  other.join();
}
