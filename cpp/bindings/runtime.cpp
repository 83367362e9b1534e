#include "bindings/common.hpp"

namespace nanonet {

void register_runtime(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the number of OpenMP threads every kernel uses (n >= 1).");
  m.def("get_num_threads", &get_num_threads, "Number of threads the kernels use.");
  m.def("has_openmp", []() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
  }, "Whether the extension was built with OpenMP.");
  m.def("detect_isa", []() { return std::string(isa_name(detect_isa())); },
        "Best SIMD path this CPU supports: 'avx512', 'avx2' or 'ref'.");
  m.def("active_isa", []() { return std::string(isa_name(active_isa())); },
        "SIMD path the kernels use now.");
  m.def("set_isa", [](const std::string& name) { set_isa(isa_from_name(name)); }, py::arg("isa"),
        "Choose the SIMD path ('ref', 'avx2', 'avx512'); never above what the CPU supports.");
}

}  // namespace nanonet
