// Python binding of HostArena: a closable handle, and zero-copy views that keep the mapping alive.
#include <pybind11/pybind11.h>

#include <memory>

#include "bindings/bindings.h"
#include "bindings/gil.h"
#include "bindings/handles.h"
#include "core/Error.h"

namespace py = pybind11;

namespace reactor::bindings {

namespace {

// The exporter behind arena.view(): owns a reference to the arena, so the memory outlives close().
struct ArenaRegion {
  std::shared_ptr<HostArena> arena;
  uint8_t* data;
  size_t size;
};

}  // namespace

const std::shared_ptr<HostArena>& ArenaHandle::get() const {
  RE_CHECK(arena != nullptr, Closed, "the host arena is closed");
  return arena;
}

void init_arena(py::module_& m) {
  py::class_<ArenaRegion>(m, "_ArenaRegion", py::buffer_protocol()).def_buffer([](ArenaRegion& region) {
    return py::buffer_info(region.data, 1, py::format_descriptor<uint8_t>::format(), 1,
                           {static_cast<py::ssize_t>(region.size)}, {1}, /*readonly=*/false);
  });

  py::class_<ArenaHandle>(m, "HostArena")
      .def(py::init([](int64_t nbytes, bool lock, bool cuda_register, bool hugepages) {
             // Mapping and prefaulting a large region takes a while: other threads may run.
             GilRelease release;
             return ArenaHandle{std::make_shared<HostArena>(nbytes, ArenaOptions{lock, cuda_register, hugepages})};
           }),
           py::arg("nbytes"), py::kw_only(), py::arg("lock") = true, py::arg("cuda_register") = true,
           py::arg("hugepages") = true)
      .def_property_readonly("nbytes", [](const ArenaHandle& h) { return h.get()->size(); })
      .def_property_readonly("used", [](const ArenaHandle& h) { return h.get()->used(); })
      .def_property_readonly("pinning", [](const ArenaHandle& h) { return h.get()->pinning(); })
      .def_property_readonly("locked", [](const ArenaHandle& h) { return h.get()->locked(); })
      .def_property_readonly("cuda_registered", [](const ArenaHandle& h) { return h.get()->cuda_registered(); })
      .def_property_readonly("cuda", [](const ArenaHandle& h) { return h.get()->cuda(); })
      .def_property_readonly("hugepages", [](const ArenaHandle& h) { return h.get()->hugepages(); })
      .def_property_readonly("closed", [](const ArenaHandle& h) { return h.arena == nullptr; })
      .def(
          "allocate",
          [](const ArenaHandle& h, int64_t nbytes, int64_t alignment) { return h.get()->allocate(nbytes, alignment); },
          py::arg("nbytes"), py::arg("alignment") = 64)
      .def(
          "view",
          [](const ArenaHandle& h, int64_t offset, int64_t nbytes) {
            const auto& arena = h.get();
            uint8_t* data = arena->at(offset, nbytes);
            py::object region = py::cast(ArenaRegion{arena, data, static_cast<size_t>(nbytes)});
            return py::memoryview(region);
          },
          py::arg("offset"), py::arg("nbytes"))
      .def("close", [](ArenaHandle& h) { h.arena.reset(); })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](ArenaHandle& h, const py::args&) { h.arena.reset(); })
      .def("__repr__", [](const ArenaHandle& h) {
        if (!h.arena) return std::string("<HostArena closed>");
        return "<HostArena " + std::to_string(h.arena->size()) + " bytes, pinning=" + h.arena->pinning() + ">";
      });
}

}  // namespace reactor::bindings
