// Declarations of the per-component binding functions; module.cpp only calls them in order.
#pragma once

#include <pybind11/pybind11.h>

namespace reactor::bindings {

void init_errors(pybind11::module_& m);
void init_arena(pybind11::module_& m);
void init_ring(pybind11::module_& m);
void init_writer(pybind11::module_& m);  // FramePacer, FrameWriter: the track's per-frame path
void init_packets(pybind11::module_& m);
void init_encoder(pybind11::module_& m);
void init_input(pybind11::module_& m);  // InputRing, InputFrame, Decoder
void init_audio(pybind11::module_& m);  // AudioRing
void init_cuda(pybind11::module_& m);   // csrc/bindings/cuda.cpp: real with REACTOR_WITH_CUDA, "unavailable" without

}  // namespace reactor::bindings
