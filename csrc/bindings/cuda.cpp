// Binds cuda_status() and CudaConverter: real with REACTOR_WITH_CUDA, refusing with the reason without.
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "core/Error.h"
#include "kernels/FrameFormat.h"

#ifdef REACTOR_WITH_CUDA
#include "kernels/CudaRuntime.h"
#include "kernels/Rgb24Converter.h"
#endif

namespace py = pybind11;

namespace reactor::bindings {
namespace {

using cuda::DType;
using cuda::Layout;
using cuda::ValueRange;

#ifdef REACTOR_WITH_CUDA

using Converter = cuda::Rgb24Converter;
using StreamHandle = cudaStream_t;

std::string status() { return cuda::cuda_status(); }

#else

using StreamHandle = void*;

constexpr const char* kBuiltWithout = "built without CUDA (" REACTOR_CUDA_REASON ")";

std::string status() { return std::string("unavailable: ") + kBuiltWithout; }

// Stand-in so that CudaConverter and its methods exist in every build (one API, one stub file);
// its constructor always throws, so no method of it ever runs.
class Converter {
 public:
  Converter(int /*max_width*/, int /*max_height*/) { RE_THROW(CudaError, "CUDA is unavailable: ", kBuiltWithout); }
  int max_width() const { return 0; }
  int max_height() const { return 0; }
  void convert(const void*, DType, Layout, ValueRange, int, int, void*, size_t, StreamHandle) {}
};

#endif

DType parse_dtype(const std::string& text) {
  if (text == "uint8") return DType::kUint8;
  if (text == "float16") return DType::kFloat16;
  if (text == "float32") return DType::kFloat32;
  RE_THROW(InvalidArgument, "dtype '", text, "' is not supported; CudaConverter takes 'uint8', 'float16' or 'float32'");
}

Layout parse_layout(const std::string& text) {
  if (text == "hwc") return Layout::kHWC;
  if (text == "chw") return Layout::kCHW;
  RE_THROW(InvalidArgument, "layout '", text, "' is not supported; CudaConverter takes 'hwc' or 'chw'");
}

ValueRange parse_range(const std::string& text) {
  if (text == "0_255") return ValueRange::k0To255;
  if (text == "0_1") return ValueRange::k0To1;
  if (text == "-1_1") return ValueRange::kMinus1To1;
  RE_THROW(InvalidArgument, "value_range '", text, "' is not supported; CudaConverter takes '0_255' (uint8), ",
           "'0_1' or '-1_1' (float16, float32)");
}

// The destination as writable, C-contiguous bytes; the returned info holds the buffer (and so the
// exporting object) until it is destroyed.
py::buffer_info request_destination(const py::buffer& dst, int width, int height) {
  py::buffer_info info;
  try {
    info = dst.request(/*writable=*/true);
  } catch (py::error_already_set& error) {
    if (!error.matches(PyExc_BufferError)) throw;
    RE_THROW(FrameError, "dst is not writable (", error.what(), "); pass a writable uint8 buffer such as a FrameSlot");
  }
  RE_CHECK(info.itemsize == 1, FrameError, "dst has ", info.itemsize, "-byte items (format '", info.format,
           "'); it takes uint8");
  py::ssize_t expected_stride = 1;
  for (py::ssize_t axis = info.ndim - 1; axis >= 0; --axis) {
    RE_CHECK(info.shape[axis] == 1 || info.strides[axis] == expected_stride, FrameError,
             "dst is not C-contiguous; CudaConverter writes packed (height, width, 3) rows");
    expected_stride *= info.shape[axis];
  }
  if (info.ndim == 3) {
    RE_CHECK(info.shape[0] == height && info.shape[1] == width && info.shape[2] == 3, FrameError, "dst has shape (",
             info.shape[0], ", ", info.shape[1], ", ", info.shape[2], "); a ", width, "x", height, " frame needs (",
             height, ", ", width, ", 3)");
  }
  return info;
}

}  // namespace

void init_cuda(py::module_& m) {
  m.def("cuda_status", &status, "``\"available: <device>\"`` or ``\"unavailable: <reason>\"``, found at run time.");

  py::class_<Converter>(m, "CudaConverter",
                        "Converts a CUDA frame (uint8/float16/float32, HWC/CHW) into packed RGB24 in host memory.")
      .def(py::init<int, int>(), py::arg("max_width"), py::arg("max_height"))
      .def_property_readonly("max_width", &Converter::max_width)
      .def_property_readonly("max_height", &Converter::max_height)
      .def(
          "convert",
          [](Converter& self, std::uintptr_t src_ptr, const std::string& dtype, const std::string& layout,
             const std::string& value_range, int width, int height, const py::buffer& dst, std::uintptr_t stream) {
            const DType parsed_dtype = parse_dtype(dtype);
            const Layout parsed_layout = parse_layout(layout);
            const ValueRange parsed_range = parse_range(value_range);
            const py::buffer_info out = request_destination(dst, width, height);
            void* const out_ptr = out.ptr;
            const size_t out_bytes = static_cast<size_t>(out.size) * static_cast<size_t>(out.itemsize);
            // The kernel, the device-to-host copy and the wait for it take up to a frame time; the
            // session and asyncio threads keep running meanwhile. Nothing in this scope touches a
            // Python object (`out` keeps dst alive and is released after the GIL is back).
            GilRelease release;
            self.convert(reinterpret_cast<const void*>(src_ptr), parsed_dtype, parsed_layout, parsed_range, width,
                         height, out_ptr, out_bytes, reinterpret_cast<StreamHandle>(stream));
          },
          py::arg("src_ptr"), py::arg("dtype"), py::arg("layout"), py::arg("value_range"), py::arg("width"),
          py::arg("height"), py::arg("dst"), py::arg("stream") = 0,
          "Converts the frame at device address src_ptr into dst; returns once dst holds it.");
}

}  // namespace reactor::bindings
