// reactor_engine._C: only the list of component bindings, in dependency order.
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "bindings/gil.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "reactor-engine native core: HostArena, FrameRing, Encoder, PacketQueue; InputRing, Decoder, AudioRing.";
  reactor::bindings::init_errors(m);
  reactor::bindings::init_arena(m);
  reactor::bindings::init_ring(m);
  reactor::bindings::init_writer(m);  // after the ring: FrameWriter takes a FrameRing
  reactor::bindings::init_packets(m);
  reactor::bindings::init_encoder(m);
  reactor::bindings::init_input(m);
  reactor::bindings::init_audio(m);
  reactor::bindings::init_cuda(m);
  // Blocking calls that return once Python's exit has begun park their (daemon) thread: gil.h.
  pybind11::module_::import("atexit").attr("register")(
      pybind11::cpp_function([] { reactor::bindings::mark_python_exiting(); }));
}
