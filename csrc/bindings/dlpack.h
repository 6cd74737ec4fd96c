// The DLPack v0.x ABI structs (the unversioned "dltensor" capsule), as the DLPack specification lays them out.
#pragma once

#include <cstdint>

namespace reactor::bindings::dlpack {

enum DeviceType : int32_t { kDLCPU = 1 };
enum DataTypeCode : uint8_t { kDLUInt = 1 };

struct Device {
  int32_t device_type;
  int32_t device_id;
};

struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements
  uint64_t byte_offset;
};

struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

}  // namespace reactor::bindings::dlpack
