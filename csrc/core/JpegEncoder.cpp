// JpegEncoder: libjpeg's compress object with our memory, destination and error managers.
#include "core/JpegEncoder.h"

// jpeglib.h needs size_t and FILE declared before it, and jerror.h its types: this order, unsorted.
// clang-format off
#include <cstdio>
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <turbojpeg.h>

#include <algorithm>
#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "core/Error.h"

namespace reactor {

namespace {

// Note: libjpeg-turbo's own manager aligns every object to 32 bytes (its ALIGN_SIZE, for AVX2) and
// rounds a sample row up to 64 samples, because its SIMD routines read and write whole vectors past
// a row's nominal end; ours keeps both guarantees (64-byte alignment is a multiple of 32).
constexpr size_t kAlign = 64;
constexpr size_t kSampleRowMultiple = 64;
constexpr size_t kMaxObjectBytes = size_t{1} << 31;  // no frame of at most 65500 x 65500 asks for more
constexpr JDIMENSION kRowsPerWrite = 16;             // one 4:2:0 MCU row per jpeg_write_scanlines

size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// One libjpeg pool's memory. Objects are bump-allocated from the main block; what does not fit goes
// to overflow chunks. reset() (libjpeg's free_pool) forgets every object and, when the cycle that
// ends overflowed, replaces the main block by one that holds that whole cycle: the next cycle of the
// same or a smaller frame asks libjpeg's same objects, no larger, so it takes nothing from malloc.
// Every member runs inside libjpeg's calls: none throws (a failure returns nullptr and the caller
// raises libjpeg's own out-of-memory error).
class PoolMemory {
 public:
  PoolMemory() = default;
  ~PoolMemory() { release(); }
  PoolMemory(const PoolMemory&) = delete;
  PoolMemory& operator=(const PoolMemory&) = delete;

  void* allocate(size_t bytes) noexcept {  // bytes: a multiple of kAlign
    cycle_bytes_ += bytes;
    if (main_size_ - main_used_ >= bytes) {
      void* object = main_ + main_used_;
      main_used_ += bytes;
      return object;
    }
    if (chunk_count_ == 0 || chunk_size_ - chunk_used_ < bytes) {
      if (chunk_count_ == kMaxChunks) return nullptr;
      const size_t size = std::max(bytes, kChunkBytes);
      auto* chunk = static_cast<uint8_t*>(std::aligned_alloc(kAlign, size));
      if (chunk == nullptr) return nullptr;
      ++blocks_allocated_;
      chunks_[chunk_count_++] = chunk;
      chunk_size_ = size;
      chunk_used_ = 0;
    }
    void* object = chunks_[chunk_count_ - 1] + chunk_used_;
    chunk_used_ += bytes;
    return object;
  }

  void reset() noexcept {
    if (chunk_count_ > 0) {
      free_chunks();
      std::free(main_);
      main_ = static_cast<uint8_t*>(std::aligned_alloc(kAlign, cycle_bytes_));
      main_size_ = main_ != nullptr ? cycle_bytes_ : 0;  // on failure the next cycle overflows again
      ++blocks_allocated_;
    }
    main_used_ = 0;
    cycle_bytes_ = 0;
  }

  void release() noexcept {
    free_chunks();
    std::free(main_);
    main_ = nullptr;
    main_size_ = main_used_ = cycle_bytes_ = 0;
  }

  int64_t blocks_allocated() const { return blocks_allocated_; }

 private:
  static constexpr int kMaxChunks = 64;
  static constexpr size_t kChunkBytes = 64 * 1024;

  void free_chunks() noexcept {
    for (int i = 0; i < chunk_count_; ++i) std::free(chunks_[i]);
    chunk_count_ = 0;
    chunk_size_ = chunk_used_ = 0;
  }

  uint8_t* main_ = nullptr;
  size_t main_size_ = 0;
  size_t main_used_ = 0;
  uint8_t* chunks_[kMaxChunks] = {};
  int chunk_count_ = 0;
  size_t chunk_size_ = 0;  // the newest chunk's
  size_t chunk_used_ = 0;
  size_t cycle_bytes_ = 0;  // every object since the last reset, in the main block or not
  int64_t blocks_allocated_ = 0;
};

// A full-image array that libjpeg reaches a strip at a time (only for multi-pass compression:
// optimized Huffman tables, progressive scans). Held wholly in memory; libjpeg's handles to these
// (jvirt_sarray_ptr, jvirt_barray_ptr) are pointers to ours, cast.
template <typename Element>
struct VirtualArray {
  Element** rows = nullptr;  // nullptr until realize_virt_arrays
  size_t per_row = 0;        // elements a row holds
  JDIMENSION rows_in_array = 0;
  JDIMENSION maxaccess = 0;
  JDIMENSION first_undef_row = 0;  // rows from here on were never written
  bool pre_zero = false;
  VirtualArray* next = nullptr;
};

}  // namespace

namespace detail {

// libjpeg's managers point here through cinfo.client_data and cinfo.err / cinfo.dest, which point at
// the first member of their struct (standard layout, so the casts back are exact).
struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// Note: libjpeg stores a byte and then asks for room when free_in_buffer drops to 0, so the buffer
// being full is not yet an overflow (the JPEG may end there). The one-byte spill takes over then:
// a byte stored in it is the overflow, found when libjpeg asks for room again.
struct JpegDestination {
  jpeg_destination_mgr pub;
  uint8_t* data = nullptr;
  size_t capacity = 0;
  bool in_spill = false;
  bool overflowed = false;
  JOCTET spill[1] = {};

  size_t size() const { return in_spill ? capacity : capacity - pub.free_in_buffer; }
};

struct JpegCompressor {
  JpegCompressor() = default;
  ~JpegCompressor() { jpeg_destroy_compress(&cinfo); }  // safe on a never-created object (mem is null)
  JpegCompressor(const JpegCompressor&) = delete;
  JpegCompressor& operator=(const JpegCompressor&) = delete;

  bool create();  // sets libjpeg up for quality and subsampling
  bool compress(const uint8_t* rgb, JDIMENSION width, JDIMENSION height, uint8_t* dst, size_t capacity,
                unsigned int restart_mcus);
  void install_memory_methods();

  int quality = 0;
  Subsampling subsampling = Subsampling::S420;
  jpeg_compress_struct cinfo{};
  JpegErrorManager error{};
  JpegDestination dest{};
  PoolMemory pools[JPOOL_NUMPOOLS];
  VirtualArray<JSAMPLE>* sample_arrays = nullptr;  // this image's, for realize_virt_arrays
  VirtualArray<JBLOCK>* block_arrays = nullptr;
  jpeg_memory_mgr library_methods{};  // libjpeg's own manager, restored for its self_destruct
};

}  // namespace detail

namespace {

using detail::JpegCompressor;

JpegCompressor& compressor(j_common_ptr cinfo) { return *static_cast<JpegCompressor*>(cinfo->client_data); }

// --- The error manager: every libjpeg error ends in a longjmp to the setjmp of the running call. ---

void error_exit(j_common_ptr cinfo) {
  auto* error = reinterpret_cast<detail::JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, error->message);
  std::longjmp(error->jump, 1);
}

void output_message(j_common_ptr) {}  // warnings are counted (err->num_warnings), not printed

// --- The destination manager: the caller's buffer, and an error, not a reallocation, when full. ---

void use_spill(detail::JpegDestination& dest) {
  dest.in_spill = true;
  dest.pub.next_output_byte = dest.spill;
  dest.pub.free_in_buffer = sizeof(dest.spill);
}

void init_destination(j_compress_ptr cinfo) {
  auto& dest = compressor(reinterpret_cast<j_common_ptr>(cinfo)).dest;
  dest.in_spill = false;
  dest.pub.next_output_byte = dest.data;
  dest.pub.free_in_buffer = dest.capacity;
  if (dest.capacity == 0) use_spill(dest);  // libjpeg never checks before its first byte
}

boolean empty_output_buffer(j_compress_ptr cinfo) {
  auto& dest = compressor(reinterpret_cast<j_common_ptr>(cinfo)).dest;
  if (!dest.in_spill) {
    use_spill(dest);
    return TRUE;
  }
  dest.overflowed = true;
  ERREXIT(cinfo, JERR_BUFFER_SIZE);
  return FALSE;  // not reached
}

void term_destination(j_compress_ptr) {}

// --- The memory manager: the contract of each method is jmemmgr.c's (libjpeg-turbo 2.1). ---

void* alloc_object(j_common_ptr cinfo, int pool_id, size_t bytes) {
  if (pool_id < 0 || pool_id >= JPOOL_NUMPOOLS) ERREXIT1(cinfo, JERR_BAD_POOL_ID, pool_id);
  if (bytes > kMaxObjectBytes) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
  void* object = compressor(cinfo).pools[pool_id].allocate(round_up(bytes == 0 ? 1 : bytes, kAlign));
  if (object == nullptr) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 2);
  return object;
}

// libjpeg's small and large objects differ only in how its own manager groups them: one kind here.
void* alloc_small(j_common_ptr cinfo, int pool_id, size_t bytes) { return alloc_object(cinfo, pool_id, bytes); }
void* alloc_large(j_common_ptr cinfo, int pool_id, size_t bytes) { return alloc_object(cinfo, pool_id, bytes); }

// Row pointers and one contiguous block of rows, each row per_row elements.
template <typename Element>
Element** alloc_rows(j_common_ptr cinfo, int pool_id, size_t per_row, JDIMENSION numrows) {
  if (per_row == 0 || per_row > kMaxObjectBytes / sizeof(Element) / std::max<JDIMENSION>(numrows, 1)) {
    ERREXIT(cinfo, JERR_WIDTH_OVERFLOW);
  }
  auto** rows = static_cast<Element**>(alloc_object(cinfo, pool_id, numrows * sizeof(Element*)));
  auto* data = static_cast<Element*>(alloc_object(cinfo, pool_id, per_row * numrows * sizeof(Element)));
  for (JDIMENSION i = 0; i < numrows; ++i) rows[i] = data + i * per_row;
  return rows;
}

JSAMPARRAY alloc_sarray(j_common_ptr cinfo, int pool_id, JDIMENSION samplesperrow, JDIMENSION numrows) {
  return alloc_rows<JSAMPLE>(cinfo, pool_id, round_up(samplesperrow, kSampleRowMultiple), numrows);
}

JBLOCKARRAY alloc_barray(j_common_ptr cinfo, int pool_id, JDIMENSION blocksperrow, JDIMENSION numrows) {
  return alloc_rows<JBLOCK>(cinfo, pool_id, blocksperrow, numrows);
}

template <typename Element>
VirtualArray<Element>* request_virtual(j_common_ptr cinfo, int pool_id, boolean pre_zero, size_t per_row,
                                       JDIMENSION numrows, JDIMENSION maxaccess, VirtualArray<Element>*& list) {
  if (pool_id != JPOOL_IMAGE) ERREXIT1(cinfo, JERR_BAD_POOL_ID, pool_id);  // as libjpeg: image lifetime only
  auto* array = static_cast<VirtualArray<Element>*>(alloc_object(cinfo, pool_id, sizeof(VirtualArray<Element>)));
  new (array) VirtualArray<Element>{};  // placement: no allocation
  array->per_row = per_row;
  array->rows_in_array = numrows;
  array->maxaccess = maxaccess;
  array->pre_zero = pre_zero != FALSE;
  array->next = list;
  list = array;
  return array;
}

jvirt_sarray_ptr request_virt_sarray(j_common_ptr cinfo, int pool_id, boolean pre_zero, JDIMENSION samplesperrow,
                                     JDIMENSION numrows, JDIMENSION maxaccess) {
  return reinterpret_cast<jvirt_sarray_ptr>(
      request_virtual(cinfo, pool_id, pre_zero, samplesperrow, numrows, maxaccess, compressor(cinfo).sample_arrays));
}

jvirt_barray_ptr request_virt_barray(j_common_ptr cinfo, int pool_id, boolean pre_zero, JDIMENSION blocksperrow,
                                     JDIMENSION numrows, JDIMENSION maxaccess) {
  return reinterpret_cast<jvirt_barray_ptr>(
      request_virtual(cinfo, pool_id, pre_zero, blocksperrow, numrows, maxaccess, compressor(cinfo).block_arrays));
}

void realize_virt_arrays(j_common_ptr cinfo) {
  JpegCompressor& c = compressor(cinfo);
  for (auto* a = c.sample_arrays; a != nullptr; a = a->next) {
    if (a->rows == nullptr) a->rows = alloc_rows<JSAMPLE>(cinfo, JPOOL_IMAGE, a->per_row, a->rows_in_array);
  }
  for (auto* a = c.block_arrays; a != nullptr; a = a->next) {
    if (a->rows == nullptr) a->rows = alloc_rows<JBLOCK>(cinfo, JPOOL_IMAGE, a->per_row, a->rows_in_array);
  }
}

// jmemmgr.c's access rules: a writer may not skip rows; rows first reached are zeroed if the array
// was requested pre-zeroed, and reading them otherwise is an error.
template <typename Element>
Element** access_virtual(j_common_ptr cinfo, VirtualArray<Element>& a, JDIMENSION start_row, JDIMENSION num_rows,
                         boolean writable) {
  const JDIMENSION end_row = start_row + num_rows;
  if (end_row > a.rows_in_array || end_row < start_row || num_rows > a.maxaccess || a.rows == nullptr) {
    ERREXIT(cinfo, JERR_BAD_VIRTUAL_ACCESS);
  }
  if (a.first_undef_row < end_row) {
    JDIMENSION undef_row = a.first_undef_row;
    if (undef_row < start_row) {
      if (writable) ERREXIT(cinfo, JERR_BAD_VIRTUAL_ACCESS);
      undef_row = start_row;
    }
    if (writable) a.first_undef_row = end_row;
    if (a.pre_zero) {
      for (JDIMENSION row = undef_row; row < end_row; ++row) std::memset(a.rows[row], 0, a.per_row * sizeof(Element));
    } else if (!writable) {
      ERREXIT(cinfo, JERR_BAD_VIRTUAL_ACCESS);
    }
  }
  return a.rows + start_row;
}

JSAMPARRAY access_virt_sarray(j_common_ptr cinfo, jvirt_sarray_ptr ptr, JDIMENSION start_row, JDIMENSION num_rows,
                              boolean writable) {
  return access_virtual(cinfo, *reinterpret_cast<VirtualArray<JSAMPLE>*>(ptr), start_row, num_rows, writable);
}

JBLOCKARRAY access_virt_barray(j_common_ptr cinfo, jvirt_barray_ptr ptr, JDIMENSION start_row, JDIMENSION num_rows,
                               boolean writable) {
  return access_virtual(cinfo, *reinterpret_cast<VirtualArray<JBLOCK>*>(ptr), start_row, num_rows, writable);
}

void free_pool(j_common_ptr cinfo, int pool_id) {
  if (pool_id < 0 || pool_id >= JPOOL_NUMPOOLS) ERREXIT1(cinfo, JERR_BAD_POOL_ID, pool_id);
  JpegCompressor& c = compressor(cinfo);
  if (pool_id == JPOOL_IMAGE) {
    c.sample_arrays = nullptr;
    c.block_arrays = nullptr;
    c.pools[JPOOL_IMAGE].reset();  // kept for the next image
  } else {
    c.pools[pool_id].release();  // only jpeg_destroy frees the permanent pool
  }
}

// jpeg_destroy: our pools go, then libjpeg's own manager frees its control block (and any pool it
// filled before install_memory_methods; libjpeg-turbo 2.1 fills none).
void self_destruct(j_common_ptr cinfo) {
  JpegCompressor& c = compressor(cinfo);
  for (auto& pool : c.pools) pool.release();
  c.sample_arrays = nullptr;
  c.block_arrays = nullptr;
  *cinfo->mem = c.library_methods;
  (*cinfo->mem->self_destruct)(cinfo);
}

int h_factor(Subsampling s) { return s == Subsampling::S422 || s == Subsampling::S420 ? 2 : 1; }
int v_factor(Subsampling s) { return s == Subsampling::S420 ? 2 : 1; }

}  // namespace

namespace detail {

void JpegCompressor::install_memory_methods() {
  library_methods = *cinfo.mem;
  jpeg_memory_mgr& mem = *cinfo.mem;
  mem.alloc_small = alloc_small;
  mem.alloc_large = alloc_large;
  mem.alloc_sarray = alloc_sarray;
  mem.alloc_barray = alloc_barray;
  mem.request_virt_sarray = request_virt_sarray;
  mem.request_virt_barray = request_virt_barray;
  mem.realize_virt_arrays = realize_virt_arrays;
  mem.access_virt_sarray = access_virt_sarray;
  mem.access_virt_barray = access_virt_barray;
  mem.free_pool = free_pool;
  mem.self_destruct = self_destruct;
}

// A setjmp frame (as compress() below): a libjpeg error longjmps back here past C frames and our
// callbacks, none of which owns anything; nothing in this function has a destructor. (Its settings
// come from members, not parameters, which gcc's -Wclobbered would flag across the setjmp.)
bool JpegCompressor::create() {
  cinfo.err = jpeg_std_error(&error.pub);
  error.pub.error_exit = error_exit;
  error.pub.output_message = output_message;
  cinfo.client_data = this;
  dest.pub.init_destination = init_destination;
  dest.pub.empty_output_buffer = empty_output_buffer;
  dest.pub.term_destination = term_destination;
  if (setjmp(error.jump) != 0) return false;
  jpeg_create_compress(&cinfo);
  install_memory_methods();
  cinfo.dest = &dest.pub;
  // Note: TurboJPEG 2.1's setCompDefaults() for TJPF_RGB, in its order, so that the bytes are its
  // bytes: the fast integer DCT below quality 96, the accurate one from 96 (TJFLAG_ACCURATEDCT
  // unset); default Huffman tables; baseline. Its TJ_OPTIMIZE / TJ_ARITHMETIC / TJ_RESTART /
  // TJ_PROGRESSIVE environment variables are not read here.
  cinfo.in_color_space = JCS_EXT_RGB;
  cinfo.input_components = 3;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  cinfo.dct_method = quality >= 96 ? JDCT_ISLOW : JDCT_FASTEST;
  jpeg_set_colorspace(&cinfo, subsampling == Subsampling::Gray ? JCS_GRAYSCALE : JCS_YCbCr);
  cinfo.comp_info[0].h_samp_factor = h_factor(subsampling);
  cinfo.comp_info[0].v_samp_factor = v_factor(subsampling);
  for (int i = 1; i < cinfo.num_components; ++i) {
    cinfo.comp_info[i].h_samp_factor = 1;
    cinfo.comp_info[i].v_samp_factor = 1;
  }
  return true;
}

bool JpegCompressor::compress(const uint8_t* rgb, JDIMENSION width, JDIMENSION height, uint8_t* dst, size_t capacity,
                              unsigned int restart_mcus) {
  dest.data = dst;
  dest.capacity = capacity;
  dest.overflowed = false;
  if (setjmp(error.jump) != 0) {
    jpeg_abort_compress(&cinfo);  // back to the start state; frees the image pool (kept for reuse)
    return false;
  }
  cinfo.image_width = width;
  cinfo.image_height = height;
  cinfo.restart_interval = restart_mcus;
  cinfo.restart_in_rows = 0;
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = static_cast<size_t>(width) * 3;
  JSAMPROW rows[kRowsPerWrite];
  while (cinfo.next_scanline < height) {
    const JDIMENSION first = cinfo.next_scanline;
    const JDIMENSION count = std::min(kRowsPerWrite, height - first);
    for (JDIMENSION i = 0; i < count; ++i) rows[i] = const_cast<JSAMPROW>(rgb + (first + i) * stride);
    jpeg_write_scanlines(&cinfo, rows, count);
  }
  jpeg_finish_compress(&cinfo);
  return true;
}

}  // namespace detail

JpegEncoder::JpegEncoder(int quality, Subsampling subsampling)
    : subsampling_(subsampling), state_(std::make_unique<detail::JpegCompressor>()) {
  RE_CHECK(quality >= 1 && quality <= 100, InvalidArgument, "JPEG quality must be between 1 and 100, got ", quality);
  state_->quality = quality;
  state_->subsampling = subsampling;
  RE_CHECK(state_->create(), EncodeError, "cannot set up a JPEG compressor (quality ", quality, ", subsampling ",
           subsampling_name(subsampling), "): ", state_->error.message);
}

JpegEncoder::~JpegEncoder() = default;

size_t JpegEncoder::max_bytes(int64_t width, int64_t height) const {
  int samp = TJSAMP_444;
  switch (subsampling_) {
    case Subsampling::S444: samp = TJSAMP_444; break;
    case Subsampling::S422: samp = TJSAMP_422; break;
    case Subsampling::S420: samp = TJSAMP_420; break;
    case Subsampling::Gray: samp = TJSAMP_GRAY; break;
  }
  return tjBufSize(static_cast<int>(width), static_cast<int>(height), samp);
}

void JpegEncoder::reserve(int64_t max_width, int64_t max_height) {
  const std::vector<uint8_t> frame(static_cast<size_t>(max_width * max_height * 3), 128);
  std::vector<uint8_t> jpeg(max_bytes(max_width, max_height));
  encode(frame.data(), max_width, max_height, jpeg.data(), jpeg.size());
}

size_t JpegEncoder::encode(const uint8_t* rgb, int64_t width, int64_t height, uint8_t* dst, size_t capacity,
                           int64_t restart_mcus) {
  RE_CHECK(width >= 1 && height >= 1 && width <= JPEG_MAX_DIMENSION && height <= JPEG_MAX_DIMENSION, EncodeError,
           "a JPEG frame is 1 to ", JPEG_MAX_DIMENSION, " pixels on a side, got ", width, "x", height);
  RE_CHECK(restart_mcus >= 0 && restart_mcus <= 65535, InvalidArgument,
           "a JPEG restart interval is 0 to 65535 MCUs, got ", restart_mcus);
  detail::JpegCompressor& c = *state_;
  if (!c.compress(rgb, static_cast<JDIMENSION>(width), static_cast<JDIMENSION>(height), dst, capacity,
                  static_cast<unsigned int>(restart_mcus))) {
    RE_CHECK(!c.dest.overflowed, EncodeError, "the JPEG of a ", width, "x", height,
             " frame does not fit in the packet buffer of ", capacity, " bytes");
    RE_THROW(EncodeError, "JPEG encoding of a ", width, "x", height, " frame failed: ", c.error.message);
  }
  return c.dest.size();
}

int JpegEncoder::mcu_width() const { return 8 * h_factor(subsampling_); }
int JpegEncoder::mcu_height() const { return 8 * v_factor(subsampling_); }

int64_t JpegEncoder::blocks_allocated() const {
  return state_->pools[JPOOL_PERMANENT].blocks_allocated() + state_->pools[JPOOL_IMAGE].blocks_allocated();
}

}  // namespace reactor
