// Python binding of Encoder: construction starts the native thread; close/flush release the GIL.
#include "core/Encoder.h"

#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "bindings/bindings.h"
#include "bindings/handles.h"
#include "core/Error.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

struct EncoderHandle {
  std::shared_ptr<Encoder> encoder;
  CodecOptions options;
};

void close_encoder(EncoderHandle& h) {
  {
    py::gil_scoped_release release;  // joins the encoder thread, which never needs the GIL
    h.encoder->close();
  }
  h.encoder->check();  // an error the thread stashed before closing is not lost
}

}  // namespace

void init_encoder(py::module_& m) {
  py::class_<EncoderHandle>(m, "Encoder")
      .def(py::init([](std::shared_ptr<FrameRing> ring, const std::string& codec, int quality,
                       const std::string& subsampling, int64_t queue_capacity) {
             RE_CHECK(ring != nullptr, InvalidArgument, "an encoder needs a FrameRing, got None");
             CodecOptions options{parse_codec(codec), quality, parse_subsampling(subsampling)};
             return EncoderHandle{std::make_shared<Encoder>(std::move(ring), options, queue_capacity), options};
           }),
           py::arg("ring"), py::arg("codec") = "jpeg", py::arg("quality") = 90, py::arg("subsampling") = "420",
           py::arg("queue_capacity") = 8)
      .def_property_readonly("codec", [](const EncoderHandle& h) { return codec_name(h.options.kind); })
      .def_property_readonly("quality", [](const EncoderHandle& h) { return h.options.quality; })
      .def_property_readonly("subsampling",
                             [](const EncoderHandle& h) { return subsampling_name(h.options.subsampling); })
      .def_property_readonly("queue", [](const EncoderHandle& h) { return h.encoder->queue(); })
      .def_property_readonly("running", [](const EncoderHandle& h) { return h.encoder->running(); })
      .def(
          "flush",
          [](EncoderHandle& h, const py::object& timeout) {
            const int64_t timeout_ns = timeout_to_ns(timeout);
            py::gil_scoped_release release;  // waits for the encoder thread to drain the ring
            h.encoder->flush(timeout_ns);
          },
          py::arg("timeout") = py::none())
      .def("check", [](EncoderHandle& h) { h.encoder->check(); })
      .def("close", &close_encoder)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](EncoderHandle& h, const py::args&) { close_encoder(h); })
      .def("__repr__", [](const EncoderHandle& h) {
        return std::string("<Encoder ") + codec_name(h.options.kind) +
               (h.encoder->running() ? " running>" : " closed>");
      });
}

}  // namespace reactor::bindings
