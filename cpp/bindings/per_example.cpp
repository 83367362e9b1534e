#include "nanonet/per_example.hpp"

#include <cstdint>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

py::array matmul_impl(const char* fn, bool use_ref, const py::array& a, const py::array& d,
                      bool time_major, bool bias) {
  float_dtype(a, fn, "a");
  same_dtype(a, d, fn, "a", "d");
  check_ndim(a, 3, fn, "a");
  check_ndim(d, 3, fn, "d");
  check_contiguous(a, fn, "a");
  check_contiguous(d, fn, "d");
  const char* layout = time_major ? "(T, B, N)" : "(B, T, N)";
  if (d.shape(0) != a.shape(0) || d.shape(1) != a.shape(1))
    fail(fn, std::string("d must be ") + layout + " with the first two axes of a " +
                 shape_str(a) + "; got " + shape_str(d));
  const index_t TT = time_major ? a.shape(0) : a.shape(1);
  const index_t B = time_major ? a.shape(1) : a.shape(0);
  const index_t K = a.shape(2), N = d.shape(2);
  PerExampleDims dims{B, TT, K, N, time_major ? K : TT * K, time_major ? B * K : K,
                      time_major ? N : TT * N, time_major ? B * N : N};
  py::array out(a.dtype(), std::vector<py::ssize_t>{B});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* pa = cptr<T>(a);
    const T* pd = cptr<T>(d);
    T* po = mptr<T>(out);
    py::gil_scoped_release release;
    if (use_ref)
      per_example_matmul_sq_norms_ref<T>(po, pa, pd, dims, bias);
    else
      per_example_matmul_sq_norms<T>(po, pa, pd, dims, bias);
  };
  dispatch_float(a, run);
  return out;
}

py::array embedding_impl(const char* fn, bool use_ref, const py::array& ids, const py::array& dy) {
  const bool i32 = ids.dtype().is(py::dtype::of<int32_t>());
  if (!i32 && !ids.dtype().is(py::dtype::of<int64_t>()))
    throw py::type_error(std::string(fn) + ": ids must be int32 or int64; got " +
                         std::string(py::str(ids.dtype())));
  check_ndim(ids, 2, fn, "ids");
  check_contiguous(ids, fn, "ids");
  float_dtype(dy, fn, "dy");
  check_ndim(dy, 3, fn, "dy");
  check_contiguous(dy, fn, "dy");
  const index_t B = ids.shape(0), TT = ids.shape(1), E = dy.shape(2);
  if (dy.shape(0) != B || dy.shape(1) != TT)
    fail(fn, "dy must be (B, T, E) with ids (B, T) = " + shape_str(ids) + "; got " +
                 shape_str(dy));
  py::array out(dy.dtype(), std::vector<py::ssize_t>{B});
  auto run = [&](auto t0, auto i0) {
    using T = decltype(t0);
    using I = decltype(i0);
    const I* pi = cptr<I>(ids);
    const T* pdy = cptr<T>(dy);
    T* po = mptr<T>(out);
    py::gil_scoped_release release;
    if (use_ref)
      embedding_per_example_sq_norms_ref<T, I>(po, pi, pdy, B, TT, E);
    else
      embedding_per_example_sq_norms<T, I>(po, pi, pdy, B, TT, E);
  };
  if (is_f32(dy))
    i32 ? run(0.0f, int32_t(0)) : run(0.0f, int64_t(0));
  else
    i32 ? run(0.0, int32_t(0)) : run(0.0, int64_t(0));
  return out;
}

}  // namespace

void register_per_example(py::module_& m) {
  m.def(
      "per_example_matmul_sq_norms",
      [](const py::array& a, const py::array& d, bool time_major, bool bias, bool use_ref) {
        return matmul_impl(use_ref ? "per_example_matmul_sq_norms_ref"
                                   : "per_example_matmul_sq_norms",
                           use_ref, a, d, time_major, bias);
      },
      py::arg("a"), py::arg("d"), py::arg("time_major") = false, py::arg("bias") = false,
      py::arg("use_ref") = false,
      "out[b] = ||A_b^T D_b||_F^2 for a (B, T, K), d (B, T, N) (time_major: (T, B, K), "
      "(T, B, N)), float32/float64 C-contiguous: the squared norm of each example's gradient of "
      "a weight used on T rows (Gram trick or direct product, whichever is cheaper); bias: plus "
      "||sum_t D_b[t]||^2, the norm of a bias's gradient. Returns (B,).");
  m.def(
      "embedding_per_example_sq_norms",
      [](const py::array& ids, const py::array& dy, bool use_ref) {
        return embedding_impl(use_ref ? "embedding_per_example_sq_norms_ref"
                                      : "embedding_per_example_sq_norms",
                              use_ref, ids, dy);
      },
      py::arg("ids"), py::arg("dy"), py::arg("use_ref") = false,
      "out[b] = sum_v ||sum_{t: ids[b, t] = v} dy[b, t]||^2 for ids (B, T) int32/int64 and dy "
      "(B, T, E): the squared norm of each example's embedding-table gradient. Returns (B,).");
}

}  // namespace nanonet
