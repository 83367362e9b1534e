#include "nanonet/gemm.hpp"

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

struct GemmDims {
  index_t M, N, K, lda, ldb;
};

GemmDims gemm_dims(const char* fn, const py::array& a, const py::array& b, bool ta, bool tb) {
  float_dtype(a, fn, "a");
  same_dtype(a, b, fn, "a", "b");
  GemmDims d{};
  d.lda = leading_dim(a, fn, "a");
  d.ldb = leading_dim(b, fn, "b");
  d.M = ta ? a.shape(1) : a.shape(0);
  d.K = ta ? a.shape(0) : a.shape(1);
  index_t kb = tb ? b.shape(1) : b.shape(0);
  d.N = tb ? b.shape(0) : b.shape(1);
  if (kb != d.K)
    fail(fn, "inner dimensions differ: op(a) is " + dims_str({d.M, d.K}) + " and op(b) is " +
                 dims_str({kb, d.N}) + " (a " + shape_str(a) + ", b " + shape_str(b) +
                 ", transpose_a=" + (ta ? "True" : "False") +
                 ", transpose_b=" + (tb ? "True" : "False") + ")");
  return d;
}

template <typename T>
void run_gemm(bool use_ref, bool ta, bool tb, const GemmDims& d, T alpha, const py::array& a,
              const py::array& b, T beta, py::array& c, index_t ldc) {
  const T* pa = cptr<T>(a);
  const T* pb = cptr<T>(b);
  T* pc = mptr<T>(c);
  py::gil_scoped_release release;
  if (use_ref)
    gemm_ref<T>(ta, tb, d.M, d.N, d.K, alpha, pa, d.lda, pb, d.ldb, beta, pc, ldc);
  else
    gemm<T>(ta, tb, d.M, d.N, d.K, alpha, pa, d.lda, pb, d.ldb, beta, pc, ldc);
}

py::array matmul_impl(const char* fn, bool use_ref, const py::array& a, const py::array& b,
                      bool ta, bool tb) {
  GemmDims d = gemm_dims(fn, a, b, ta, tb);
  py::array c(a.dtype(), std::vector<py::ssize_t>{d.M, d.N});
  index_t ldc = d.N > 0 ? d.N : 1;
  if (is_f32(a))
    run_gemm<float>(use_ref, ta, tb, d, 1.0f, a, b, 0.0f, c, ldc);
  else
    run_gemm<double>(use_ref, ta, tb, d, 1.0, a, b, 0.0, c, ldc);
  return c;
}

}  // namespace

void register_gemm(py::module_& m) {
  m.def(
      "matmul",
      [](const py::array& a, const py::array& b, bool transpose_a, bool transpose_b) {
        return matmul_impl("matmul", false, a, b, transpose_a, transpose_b);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      "op(a) @ op(b) for 2-D float32/float64 arrays with contiguous rows; returns a new array.");
  m.def(
      "matmul_ref",
      [](const py::array& a, const py::array& b, bool transpose_a, bool transpose_b) {
        return matmul_impl("matmul_ref", true, a, b, transpose_a, transpose_b);
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      "matmul through the plain scalar gemm_ref (single thread): the C++ specification.");
  m.def(
      "gemm",
      [](const py::array& a, const py::array& b, py::array c, double alpha, double beta,
         bool transpose_a, bool transpose_b) {
        const char* fn = "gemm";
        GemmDims d = gemm_dims(fn, a, b, transpose_a, transpose_b);
        same_dtype(a, c, fn, "a", "c");
        check_writeable(c, fn, "c");
        index_t ldc = leading_dim(c, fn, "c");
        if (c.shape(0) != d.M || c.shape(1) != d.N)
          fail(fn, "c must be (M, N) = " + dims_str({d.M, d.N}) + "; got " + shape_str(c));
        if (is_f32(a))
          run_gemm<float>(false, transpose_a, transpose_b, d, float(alpha), a, b, float(beta), c,
                          ldc);
        else
          run_gemm<double>(false, transpose_a, transpose_b, d, alpha, a, b, beta, c, ldc);
      },
      py::arg("a"), py::arg("b"), py::arg("c").noconvert(), py::arg("alpha") = 1.0,
      py::arg("beta") = 0.0, py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      "In place: c = alpha * op(a) @ op(b) + beta * c (beta == 0 never reads c).");
  m.def(
      "matmul_prepacked",
      [](const py::array& a, const py::array& b, bool transpose_a, bool transpose_b,
         index_t split) {
        const char* fn = "matmul_prepacked";
        GemmDims d = gemm_dims(fn, a, b, transpose_a, transpose_b);
        py::array c(a.dtype(), std::vector<py::ssize_t>{d.M, d.N});
        index_t ldc = d.N > 0 ? d.N : 1;
        auto run = [&](auto zero) {
          using T = decltype(zero);
          const T* pa = cptr<T>(a);
          const T* pb = cptr<T>(b);
          T* pc = mptr<T>(c);
          py::gil_scoped_release release;
          PackedB<T> bp = pack_b<T>(transpose_b, d.K, d.N, pb, d.ldb);
          index_t mid = std::min(std::max<index_t>(split, 0), bp.panels());
          gemm_packed_serial<T>(transpose_a, d.M, T(1), pa, d.lda, bp, 0, mid, T(0), pc, ldc);
          gemm_packed_serial<T>(transpose_a, d.M, T(1), pa, d.lda, bp, mid, bp.panels(), T(0), pc,
                                ldc);
        };
        dispatch_float(a, run);
        return c;
      },
      py::arg("a"), py::arg("b"), py::arg("transpose_a") = false, py::arg("transpose_b") = false,
      py::arg("split") = 1,
      "matmul through pack_b + gemm_packed_serial, columns split at panel `split` (a test hook "
      "for the pre-packed path the LSTM uses).");
  m.def(
      "gemm_kernel_name",
      [](const py::dtype& dt) {
        if (dt.is(py::dtype::of<float>())) return std::string(gemm_ukernel<float>().name);
        if (dt.is(py::dtype::of<double>())) return std::string(gemm_ukernel<double>().name);
        throw py::type_error("gemm_kernel_name: dtype must be float32 or float64");
      },
      py::arg("dtype"), "Name of the micro-kernel the active ISA uses for this dtype.");
}

}  // namespace nanonet
