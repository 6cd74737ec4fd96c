// The formats a device frame may arrive in for conversion to RGB24; plain C++, no CUDA headers.
#pragma once

#include <cstddef>

namespace reactor::cuda {

enum class DType { kUint8, kFloat16, kFloat32 };
enum class Layout { kHWC, kCHW };                      // 3 channels, C-contiguous
enum class ValueRange { k0To255, k0To1, kMinus1To1 };  // k0To255 is for uint8 only

constexpr size_t element_size(DType dtype) {
  switch (dtype) {
    case DType::kUint8: return 1;
    case DType::kFloat16: return 2;
    case DType::kFloat32: return 4;
  }
  return 0;
}

// The Python-facing spellings, used in messages and by the bindings.
constexpr const char* name(DType dtype) {
  switch (dtype) {
    case DType::kUint8: return "uint8";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
  }
  return "?";
}

constexpr const char* name(Layout layout) { return layout == Layout::kHWC ? "hwc" : "chw"; }

constexpr const char* name(ValueRange range) {
  switch (range) {
    case ValueRange::k0To255: return "0_255";
    case ValueRange::k0To1: return "0_1";
    case ValueRange::kMinus1To1: return "-1_1";
  }
  return "?";
}

}  // namespace reactor::cuda
