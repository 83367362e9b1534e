#include "nanonet/pooling.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include <array>

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

// ---- windowed pooling 2-D -------------------------------------------------------------------

using Pair = std::array<index_t, 2>;

Pool2DDims pool_dims(const char* fn, index_t B, index_t H, index_t W, index_t C, const Pair& out,
                     const Pair& pool, const Pair& strides, const Pair& pads) {
  auto check = [fn](const char* name, const Pair& p, index_t lo) {
    if (p[0] < lo || p[1] < lo)
      fail(fn, std::string(name) + " must be >= " + std::to_string(lo) + "; got (" +
                   std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")");
  };
  check("pool_size", pool, 1);
  check("strides", strides, 1);
  check("pads", pads, 0);
  check("out", out, 0);
  if (pads[0] >= pool[0] || pads[1] >= pool[1])
    fail(fn, "pads must be smaller than pool_size (a window would hold only padding)");
  return {B, H, W, C, out[0], out[1], pool[0], pool[1], strides[0], strides[1], pads[0], pads[1]};
}

void check_x4(const py::array& x, const char* fn, const char* name) {
  float_dtype(x, fn, name);
  check_ndim(x, 4, fn, name);
  check_contiguous(x, fn, name);
}

template <bool Max>
py::object pool2d_forward_impl(const char* fn, const py::array& x, Pair pool, Pair strides,
                               Pair pads, Pair out, bool with_argmax) {
  check_x4(x, fn, "x");
  const Pool2DDims d =
      pool_dims(fn, x.shape(0), x.shape(1), x.shape(2), x.shape(3), out, pool, strides, pads);
  const std::vector<py::ssize_t> shp{d.B, d.OH, d.OW, d.C};
  py::array y(x.dtype(), shp);
  py::object arg_obj = py::none();
  std::int64_t* pa = nullptr;
  if (Max && with_argmax) {
    py::array_t<std::int64_t> a(shp);
    pa = a.mutable_data();
    arg_obj = a;
  }
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* px = cptr<S>(x);
    S* py_ = mptr<S>(y);
    py::gil_scoped_release release;
    if (Max)
      max_pool2d_forward<S>(py_, pa, px, d);
    else
      avg_pool2d_forward<S>(py_, px, d);
  };
  dispatch_float(x, run);
  if (Max && with_argmax) return py::make_tuple(y, arg_obj);
  return std::move(y);
}

template <bool Max>
py::array pool2d_backward_impl(const char* fn, const py::array& dy, const py::object& argmax,
                               Pair in_hw, Pair pool, Pair strides, Pair pads) {
  check_x4(dy, fn, "dy");
  const Pool2DDims d = pool_dims(fn, dy.shape(0), in_hw[0], in_hw[1], dy.shape(3),
                                 {dy.shape(1), dy.shape(2)}, pool, strides, pads);
  if (d.H < 0 || d.W < 0) fail(fn, "the input size must be >= 0");
  const std::int64_t* pa = nullptr;
  if (Max) {
    py::array a = py::cast<py::array>(argmax);
    if (!a.dtype().is(py::dtype::of<std::int64_t>()))
      throw py::type_error(std::string(fn) + ": argmax must be int64; got " +
                           std::string(py::str(a.dtype())));
    check_shape(a, {d.B, d.OH, d.OW, d.C}, fn, "argmax", "(B, OH, OW, C)");
    check_contiguous(a, fn, "argmax");
    pa = cptr<std::int64_t>(a);
    const index_t n = d.B * d.OH * d.OW * d.C, hw = d.H * d.W;
    for (index_t i = 0; i < n; ++i)
      if (pa[i] < -1 || pa[i] >= hw)
        fail(fn, "argmax must be in [-1, H*W) = [-1, " + std::to_string(hw) + "); got " +
                     std::to_string(pa[i]) + " at flat position " + std::to_string(i));
  }
  py::array dx(dy.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.W, d.C});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* pdy = cptr<S>(dy);
    S* pdx = mptr<S>(dx);
    py::gil_scoped_release release;
    if (Max)
      max_pool2d_backward<S>(pdx, pdy, pa, d);
    else
      avg_pool2d_backward<S>(pdx, pdy, d);
  };
  dispatch_float(dy, run);
  return dx;
}

void def_pooling2d(py::module_& m) {
  m.def(
      "max_pool2d_forward",
      [](const py::array& x, Pair pool, Pair strides, Pair pads, Pair out, bool with_argmax) {
        return pool2d_forward_impl<true>("max_pool2d_forward", x, pool, strides, pads, out,
                                         with_argmax);
      },
      py::arg("x"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"), py::arg("out"),
      py::arg("with_argmax"),
      "Max over windows of (B, H, W, C) -> y (B, OH, OW, C), or (y, argmax int64 ih*W + iw) "
      "with with_argmax; pads = (top, left), padding never read.");
  m.def(
      "max_pool2d_backward",
      [](const py::array& dy, const py::object& argmax, Pair in_hw, Pair pool, Pair strides,
         Pair pads) {
        return pool2d_backward_impl<true>("max_pool2d_backward", dy, argmax, in_hw, pool,
                                          strides, pads);
      },
      py::arg("dy"), py::arg("argmax"), py::arg("in_hw"), py::arg("pool_size"),
      py::arg("strides"), py::arg("pads"),
      "Gradient of max_pool2d_forward: dy routed to argmax -> dx (B, H, W, C).");
  m.def(
      "avg_pool2d_forward",
      [](const py::array& x, Pair pool, Pair strides, Pair pads, Pair out) {
        return pool2d_forward_impl<false>("avg_pool2d_forward", x, pool, strides, pads, out,
                                          false);
      },
      py::arg("x"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"), py::arg("out"),
      "Mean over the in-image part of each window of (B, H, W, C) -> (B, OH, OW, C).");
  m.def(
      "avg_pool2d_backward",
      [](const py::array& dy, Pair in_hw, Pair pool, Pair strides, Pair pads) {
        return pool2d_backward_impl<false>("avg_pool2d_backward", dy, py::none(), in_hw, pool,
                                           strides, pads);
      },
      py::arg("dy"), py::arg("in_hw"), py::arg("pool_size"), py::arg("strides"), py::arg("pads"),
      "Gradient of avg_pool2d_forward -> dx (B, H, W, C).");
}

}  // namespace

void register_pooling(py::module_& m) {
  def_pooling<false>(m);
  def_pooling<true>(m);
  def_pooling2d(m);
}

}  // namespace nanonet
