#include "bindings/common.hpp"

namespace nanonet {

void register_runtime(pybind11::module_& m) {
  namespace py = pybind11;
  tune_allocator();  // once, at import (runtime.hpp)
  m.def("allocator_tuned", &allocator_tuned,
        "Whether the import raised glibc's mmap / trim thresholds (runtime.hpp).");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the number of OpenMP threads every kernel uses (n >= 1).");
  m.def("get_num_threads", &get_num_threads,
        "Number of threads the kernels use (on this thread: capped by its thread limit).");
  m.def("set_thread_limit", &set_thread_limit, py::arg("n"),
        "Cap the threads of kernels called from this OS thread (0 = no cap); returns the "
        "previous cap.");
  m.def("get_thread_limit", &get_thread_limit, "This OS thread's cap (0 = none).");
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
  m.def("family_isa",
        [](const std::string& family) { return std::string(isa_name(family_isa(family_from_name(family)))); },
        py::arg("family"),
        "SIMD path a kernel family ('gemm', 'vecmath', 'lstm') dispatches on now: "
        "min(active_isa(), its cap).");
  m.def("set_family_cap",
        [](const std::string& family, const std::string& isa) {
          set_family_cap(family_from_name(family), isa_from_name(isa));
        },
        py::arg("family"), py::arg("isa"),
        "Cap a kernel family's SIMD path (the import-time self-check lowers it on a mismatch); "
        "never above what the CPU supports.");
  m.def("build_info", []() {
    py::dict info;
#if defined(__clang__)
    info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    info["compiler"] = std::string("gcc ") + __VERSION__;
#else
    info["compiler"] = std::string("unknown");
#endif
    info["cplusplus"] = static_cast<long>(__cplusplus);
#ifdef _OPENMP
    info["openmp"] = static_cast<long>(_OPENMP);
#else
    info["openmp"] = py::none();
#endif
#ifdef NDEBUG
    info["asserts"] = false;
#else
    info["asserts"] = true;
#endif
#if defined(__SANITIZE_ADDRESS__)
    info["sanitizers"] = std::string("address,undefined");
#else
    info["sanitizers"] = py::none();
#endif
#ifdef __OPTIMIZE__
    info["optimized"] = true;
#else
    info["optimized"] = false;
#endif
    return info;
  }, "How the extension was built: compiler, C++ standard, OpenMP version (None without), "
     "whether asserts are on, sanitizers, whether optimised.");
}

}  // namespace nanonet
