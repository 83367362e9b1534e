#include "nanonet/pooling.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

// An optional (B, T) bool mask (None -> nullptr).
const bool* opt_mask(const py::object& o, index_t B, index_t T, const char* fn) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": mask must be a numpy.ndarray or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().is(py::dtype::of<bool>()))
    throw py::type_error(std::string(fn) + ": mask must be bool; got " +
                         std::string(py::str(a.dtype())));
  check_shape(a, {B, T}, fn, "mask", "(B, T)");
  check_contiguous(a, fn, "mask");
  return static_cast<const bool*>(a.data());
}

void check_x(const py::array& x, const char* fn) {
  float_dtype(x, fn, "x");
  check_ndim(x, 3, fn, "x");
  check_contiguous(x, fn, "x");
}

void check_dy(const py::array& dy, const char* fn) {
  float_dtype(dy, fn, "dy");
  check_ndim(dy, 2, fn, "dy");
  check_contiguous(dy, fn, "dy");
}

void check_steps(index_t T, const char* fn) {
  if (T < 0) fail(fn, "steps must be >= 0; got " + std::to_string(T));
}

template <bool Ref>
py::array avg_forward_impl(const char* fn, const py::array& x, const py::object& mask) {
  check_x(x, fn);
  const index_t B = x.shape(0), T = x.shape(1), F = x.shape(2);
  const bool* pm = opt_mask(mask, B, T, fn);
  py::array y(x.dtype(), std::vector<py::ssize_t>{B, F});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* px = cptr<S>(x);
    S* py_ = mptr<S>(y);
    py::gil_scoped_release release;
    if (Ref)
      global_avg_pool1d_forward_ref<S>(py_, px, pm, B, T, F);
    else
      global_avg_pool1d_forward<S>(py_, px, pm, B, T, F);
  };
  dispatch_float(x, run);
  return y;
}

template <bool Ref>
py::array avg_backward_impl(const char* fn, const py::array& dy, index_t T,
                            const py::object& mask) {
  check_dy(dy, fn);
  check_steps(T, fn);
  const index_t B = dy.shape(0), F = dy.shape(1);
  const bool* pm = opt_mask(mask, B, T, fn);
  py::array dx(dy.dtype(), std::vector<py::ssize_t>{B, T, F});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* pdy = cptr<S>(dy);
    S* pdx = mptr<S>(dx);
    py::gil_scoped_release release;
    if (Ref)
      global_avg_pool1d_backward_ref<S>(pdx, pdy, pm, B, T, F);
    else
      global_avg_pool1d_backward<S>(pdx, pdy, pm, B, T, F);
  };
  dispatch_float(dy, run);
  return dx;
}

template <bool Ref>
py::tuple max_forward_impl(const char* fn, const py::array& x, const py::object& mask) {
  check_x(x, fn);
  const index_t B = x.shape(0), T = x.shape(1), F = x.shape(2);
  const bool* pm = opt_mask(mask, B, T, fn);
  py::array y(x.dtype(), std::vector<py::ssize_t>{B, F});
  py::array_t<std::int64_t> argmax(std::vector<py::ssize_t>{B, F});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* px = cptr<S>(x);
    S* py_ = mptr<S>(y);
    std::int64_t* pa = argmax.mutable_data();
    py::gil_scoped_release release;
    if (Ref)
      global_max_pool1d_forward_ref<S>(py_, pa, px, pm, B, T, F);
    else
      global_max_pool1d_forward<S>(py_, pa, px, pm, B, T, F);
  };
  dispatch_float(x, run);
  return py::make_tuple(y, argmax);
}

template <bool Ref>
py::array max_backward_impl(const char* fn, const py::array& dy, const py::array& argmax,
                            index_t T) {
  check_dy(dy, fn);
  check_steps(T, fn);
  const index_t B = dy.shape(0), F = dy.shape(1);
  if (!argmax.dtype().is(py::dtype::of<std::int64_t>()))
    throw py::type_error(std::string(fn) + ": argmax must be int64; got " +
                         std::string(py::str(argmax.dtype())));
  check_shape(argmax, {B, F}, fn, "argmax", "(B, F)");
  check_contiguous(argmax, fn, "argmax");
  const std::int64_t* pa = cptr<std::int64_t>(argmax);
  for (index_t i = 0; i < B * F; ++i)
    if (pa[i] < -1 || pa[i] >= T)
      fail(fn, "argmax must be in [-1, steps) = [-1, " + std::to_string(T) + "); got " +
                   std::to_string(pa[i]) + " at flat position " + std::to_string(i));
  py::array dx(dy.dtype(), std::vector<py::ssize_t>{B, T, F});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* pdy = cptr<S>(dy);
    S* pdx = mptr<S>(dx);
    py::gil_scoped_release release;
    if (Ref)
      global_max_pool1d_backward_ref<S>(pdx, pdy, pa, B, T, F);
    else
      global_max_pool1d_backward<S>(pdx, pdy, pa, B, T, F);
  };
  dispatch_float(dy, run);
  return dx;
}

template <bool Ref>
void def_pooling(py::module_& m) {
  // String literals: the lambdas keep these pointers for their error messages.
  const char* n_af = Ref ? "global_avg_pool1d_forward_ref" : "global_avg_pool1d_forward";
  const char* n_ab = Ref ? "global_avg_pool1d_backward_ref" : "global_avg_pool1d_backward";
  const char* n_mf = Ref ? "global_max_pool1d_forward_ref" : "global_max_pool1d_forward";
  const char* n_mb = Ref ? "global_max_pool1d_backward_ref" : "global_max_pool1d_backward";
  const std::string note = Ref ? " Plain serial loops (the C++ specification)." : "";
  m.def(
      n_af,
      [n_af](const py::array& x, const py::object& mask) {
        return avg_forward_impl<Ref>(n_af, x, mask);
      },
      py::arg("x"), py::arg("mask").none(true),
      ("Mean over the unmasked steps of (B, T, F) -> (B, F); 0 for a fully masked row." + note)
          .c_str());
  m.def(
      n_ab,
      [n_ab](const py::array& dy, index_t steps, const py::object& mask) {
        return avg_backward_impl<Ref>(n_ab, dy, steps, mask);
      },
      py::arg("dy"), py::arg("steps"), py::arg("mask").none(true),
      ("Gradient of global_avg_pool1d_forward -> dx (B, T, F), overwritten." + note).c_str());
  m.def(
      n_mf,
      [n_mf](const py::array& x, const py::object& mask) {
        return max_forward_impl<Ref>(n_mf, x, mask);
      },
      py::arg("x"), py::arg("mask").none(true),
      ("Max over the unmasked steps of (B, T, F) -> (y (B, F), argmax (B, F) int64, -1 and y = 0 "
       "for a fully masked row)." +
       note)
          .c_str());
  m.def(
      n_mb,
      [n_mb](const py::array& dy, const py::array& argmax, index_t steps) {
        return max_backward_impl<Ref>(n_mb, dy, argmax, steps);
      },
      py::arg("dy"), py::arg("argmax"), py::arg("steps"),
      ("Gradient of global_max_pool1d_forward: dy routed to argmax -> dx (B, T, F)." + note)
          .c_str());
}

}  // namespace

void register_pooling(py::module_& m) {
  def_pooling<false>(m);
  def_pooling<true>(m);
}

}  // namespace nanonet
