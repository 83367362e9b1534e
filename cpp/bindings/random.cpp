// Bindings for random.hpp: Philox4x32-10 blocks and Gaussian noise written into (or added to)
// an array in place (taken as it is: noconvert, C-contiguous, writeable).
#include "nanonet/random.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

void register_random(py::module_& m) {
  m.def(
      "philox4x32",
      [](const py::array& ctr, uint32_t k0, uint32_t k1) {
        const char* fn = "philox4x32";
        if (!ctr.dtype().is(py::dtype::of<uint32_t>()))
          throw py::type_error(std::string(fn) + ": counters must be uint32; got " +
                               std::string(py::str(ctr.dtype())));
        if (ctr.ndim() != 2 || ctr.shape(1) != 4)
          fail(fn, "counters must be (n, 4); got " + shape_str(ctr));
        check_contiguous(ctr, fn, "counters");
        const index_t n = ctr.shape(0);
        py::array out(ctr.dtype(), std::vector<py::ssize_t>{n, 4});
        const uint32_t* pc = cptr<uint32_t>(ctr);
        uint32_t* po = mptr<uint32_t>(out);
        py::gil_scoped_release release;
        philox4x32(po, pc, n, k0, k1);
        return out;
      },
      py::arg("counters"), py::arg("k0"), py::arg("k1"),
      "Philox4x32-10 of each row of counters (n, 4) uint32 under the key (k0, k1). Returns "
      "(n, 4) uint32.");
  m.def(
      "gaussian_noise",
      [](py::array out, uint64_t key, uint64_t counter_lo, uint64_t counter_hi, double alpha,
         double beta, bool accumulate, bool use_ref) {
        const char* fn = use_ref ? "gaussian_noise_ref" : "gaussian_noise";
        float_dtype(out, fn, "out");
        check_contiguous(out, fn, "out");
        check_writeable(out, fn, "out");
        const index_t n = out.size();
        auto run = [&](auto zero) {
          using T = decltype(zero);
          T* po = mptr<T>(out);
          py::gil_scoped_release release;
          if (use_ref)
            gaussian_noise_ref<T>(po, n, key, counter_lo, counter_hi, T(alpha), T(beta),
                                  accumulate);
          else
            gaussian_noise<T>(po, n, key, counter_lo, counter_hi, T(alpha), T(beta), accumulate);
        };
        dispatch_float(out, run);
      },
      py::arg("out").noconvert(), py::arg("key"), py::arg("counter_lo"), py::arg("counter_hi"),
      py::arg("alpha"), py::arg("beta"), py::arg("accumulate"), py::arg("use_ref") = false,
      "In place: out = alpha * z (accumulate: beta * out + alpha * z), z standard normal from "
      "Philox4x32-10 under the 64-bit key and the 128-bit counter (lo, hi) by Box-Muller; "
      "out float32/float64, C-contiguous, writeable; uses 16 * ceil(out.size / 64) counters.");
}

}  // namespace nanonet
