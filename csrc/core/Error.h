// The core's error hierarchy and the throwing check macro; translated once into Python in bindings/errors.cpp.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace reactor {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Each subclass maps to the Python class of the same role in reactor_engine/errors.py.
class InvalidArgument : public Error {
  using Error::Error;
};  // InvalidArgumentError (ValueError)
class FrameError : public Error {
  using Error::Error;
};  // FrameError (ValueError)
class Timeout : public Error {
  using Error::Error;
};  // ReactorTimeoutError (TimeoutError)
class Closed : public Error {
  using Error::Error;
};  // ClosedError (RuntimeError)
class StateError : public Error {
  using Error::Error;
};  // StateError (RuntimeError)
class EncodeError : public Error {
  using Error::Error;
};  // EncodeError (RuntimeError)
class AllocationError : public Error {
  using Error::Error;
};  // AllocationError (MemoryError)
class CudaError : public Error {
  using Error::Error;
};  // CudaError (RuntimeError)

namespace detail {

// The file name without its directory, for messages that stay readable.
constexpr const char* basename(const char* path) {
  const char* base = path;
  for (const char* p = path; *p != '\0'; ++p) {
    if (*p == '/') base = p + 1;
  }
  return base;
}

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace detail
}  // namespace reactor

// RE_CHECK(cond, Kind, message parts...): throw reactor::Kind with the message and file:line when
// cond is false. The message is built only on failure, so a check in the frame loop costs a branch.
#define RE_THROW(Kind, ...) \
  throw ::reactor::Kind(    \
      ::reactor::detail::concat(__VA_ARGS__, " [", ::reactor::detail::basename(__FILE__), ":", __LINE__, "]"))

#define RE_CHECK(cond, Kind, ...)  \
  do {                             \
    if (!(cond)) {                 \
      RE_THROW(Kind, __VA_ARGS__); \
    }                              \
  } while (0)
