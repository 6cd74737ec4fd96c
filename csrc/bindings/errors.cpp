// Translation of the core's C++ errors into the Python classes of reactor_engine/errors.py; build facts.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <string>

#include "bindings/bindings.h"
#include "core/Clock.h"
#include "core/Error.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

// Note: the classes are looked up once and kept for the interpreter's lifetime (deliberately never
// released: a translator may run during interpreter shutdown).
struct ErrorClasses {
  PyObject* reactor;
  PyObject* invalid_argument;
  PyObject* frame;
  PyObject* timeout;
  PyObject* closed;
  PyObject* state;
  PyObject* encode;
  PyObject* allocation;
  PyObject* cuda;
};

ErrorClasses* classes = nullptr;

PyObject* lookup(const py::module_& errors, const char* name) { return py::object(errors.attr(name)).release().ptr(); }

}  // namespace

void init_errors(py::module_& m) {
  const py::module_ errors = py::module_::import("reactor_engine.errors");
  classes = new ErrorClasses{
      lookup(errors, "ReactorError"),        lookup(errors, "InvalidArgumentError"), lookup(errors, "FrameError"),
      lookup(errors, "ReactorTimeoutError"), lookup(errors, "ClosedError"),          lookup(errors, "StateError"),
      lookup(errors, "EncodeError"),         lookup(errors, "AllocationError"),      lookup(errors, "CudaError")};
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const InvalidArgument& e) {
      PyErr_SetString(classes->invalid_argument, e.what());
    } catch (const FrameError& e) {
      PyErr_SetString(classes->frame, e.what());
    } catch (const Timeout& e) {
      PyErr_SetString(classes->timeout, e.what());
    } catch (const Closed& e) {
      PyErr_SetString(classes->closed, e.what());
    } catch (const StateError& e) {
      PyErr_SetString(classes->state, e.what());
    } catch (const EncodeError& e) {
      PyErr_SetString(classes->encode, e.what());
    } catch (const AllocationError& e) {
      PyErr_SetString(classes->allocation, e.what());
    } catch (const CudaError& e) {
      PyErr_SetString(classes->cuda, e.what());
    } catch (const Error& e) {
      PyErr_SetString(classes->reactor, e.what());
    }
  });

  m.attr("__version__") = REACTOR_ENGINE_VERSION;
  m.def("now_ns", &now_ns, "Nanoseconds on the core's steady clock (the clock of time.monotonic_ns).");
  m.def("build_info", [] {
    std::map<std::string, std::string> info;
    info["version"] = REACTOR_ENGINE_VERSION;
#ifdef REACTOR_WITH_CUDA
    info["cuda"] = "ON";
#else
    info["cuda"] = "OFF";
#endif
    info["cuda_reason"] = REACTOR_CUDA_REASON;
    info["cuda_archs"] = REACTOR_CUDA_ARCHS;
    info["jpeg"] = std::string("libjpeg-turbo ") + REACTOR_JPEG_VERSION;
    info["vp8"] = std::string("libvpx ") + REACTOR_VPX_VERSION;
    info["compiler"] = __VERSION__;
    info["build_type"] = REACTOR_BUILD_TYPE;
    return info;
  });
}

}  // namespace reactor::bindings
