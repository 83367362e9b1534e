#include "nanonet/conv.hpp"

#include <array>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

using Pair = std::array<index_t, 2>;

void check_pair(const char* fn, const char* name, const Pair& p, index_t lo) {
  if (p[0] < lo || p[1] < lo)
    fail(fn, std::string(name) + " must be >= " + std::to_string(lo) + "; got (" +
                 std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")");
}

// x (B, H, W, C), kernel (KH, KW, C / G, F), the geometry; the dims the kernel takes.
ConvDims conv_dims(const char* fn, const py::array& x, const py::array& kernel,
                   const Pair& strides, const Pair& pads, const Pair& dilation, index_t groups,
                   const Pair& out) {
  float_dtype(x, fn, "x");
  same_dtype(x, kernel, fn, "x", "kernel");
  check_ndim(x, 4, fn, "x");
  check_ndim(kernel, 4, fn, "kernel");
  check_contiguous(x, fn, "x");
  check_contiguous(kernel, fn, "kernel");
  check_pair(fn, "strides", strides, 1);
  check_pair(fn, "dilation", dilation, 1);
  check_pair(fn, "pads", pads, 0);
  check_pair(fn, "out", out, 0);
  if (groups < 1) fail(fn, "groups must be >= 1; got " + std::to_string(groups));
  ConvDims d{x.shape(0), x.shape(1), x.shape(2), x.shape(3), out[0], out[1], kernel.shape(3),
             kernel.shape(0), kernel.shape(1), strides[0], strides[1], dilation[0],
             dilation[1], pads[0], pads[1], groups};
  if (d.C % groups != 0 || d.F % groups != 0)
    fail(fn, "groups = " + std::to_string(groups) + " must divide the channels C = " +
                 std::to_string(d.C) + " and the filters F = " + std::to_string(d.F));
  if (kernel.shape(2) * groups != d.C)
    fail(fn, "kernel must be (KH, KW, C / groups, F) with C / groups = " +
                 std::to_string(d.C / groups) + " (x is " + shape_str(x) + "); got " +
                 shape_str(kernel));
  return d;
}

void check_like(const char* fn, const py::object& o, const py::array& x, const char* name,
                std::initializer_list<index_t> dims, const char* letters) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": " + name + " must be a numpy array or None");
  py::array a = py::cast<py::array>(o);
  same_dtype(x, a, fn, "x", name);
  check_shape(a, dims, fn, name, letters);
  check_contiguous(a, fn, name);
}

template <typename T>
py::object forward_run(bool ref, const ConvDims& d, const py::array& x, const py::array& kernel,
                       const py::object& bias, Activation act, bool keep_z) {
  const std::vector<py::ssize_t> shp{d.B, d.OH, d.OW, d.F};
  py::array y(x.dtype(), shp);
  py::object z_obj = py::none();
  T* pz = nullptr;
  if (keep_z) {
    py::array z(x.dtype(), shp);
    pz = mptr<T>(z);
    z_obj = z;
  }
  const T* pb = bias.is_none() ? nullptr : cptr<T>(py::cast<py::array>(bias));
  const T* px = cptr<T>(x);
  const T* pk = cptr<T>(kernel);
  T* py_ = mptr<T>(y);
  {
    py::gil_scoped_release release;
    (ref ? conv2d_forward_ref<T> : conv2d_forward<T>)(py_, pz, px, pk, pb, d, act);
  }
  if (keep_z) return py::make_tuple(y, z_obj);
  return std::move(y);
}

template <typename T>
py::tuple backward_run(bool ref, const ConvDims& d, const py::array& dy, const py::array& x,
                       const py::array& kernel, const py::object& y, const py::object& z,
                       Activation act, bool need_dx) {
  py::array dkernel(x.dtype(), std::vector<py::ssize_t>{d.KH, d.KW, d.C / d.G, d.F});
  py::array dbias(x.dtype(), std::vector<py::ssize_t>{d.F});
  py::object dx_obj = py::none();
  T* pdx = nullptr;
  if (need_dx) {
    py::array dx(x.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.W, d.C});
    pdx = mptr<T>(dx);
    dx_obj = dx;
  }
  // a whole-batch dz workspace for the reference only (the fast backward works tile by tile)
  std::vector<T> dz(!ref || act == Activation::linear ? 0 : size_t(d.B * d.OH * d.OW * d.F));
  const T* pyv = y.is_none() ? nullptr : cptr<T>(py::cast<py::array>(y));
  const T* pz = z.is_none() ? nullptr : cptr<T>(py::cast<py::array>(z));
  const T* pdy = cptr<T>(dy);
  const T* px = cptr<T>(x);
  const T* pk = cptr<T>(kernel);
  T* pdk = mptr<T>(dkernel);
  T* pdb = mptr<T>(dbias);
  T* pdz = dz.empty() ? nullptr : dz.data();
  {
    py::gil_scoped_release release;
    (ref ? conv2d_backward_ref<T> : conv2d_backward<T>)(pdx, pdk, pdb, pdz, pdy, px, pk, pyv, pz,
                                                        d, act);
  }
  return py::make_tuple(dx_obj, dkernel, dbias);
}

template <bool Ref>
void def_conv(py::module_& m) {
  const char* n_f = Ref ? "conv2d_forward_ref" : "conv2d_forward";
  const char* n_b = Ref ? "conv2d_backward_ref" : "conv2d_backward";
  const std::string note = Ref ? " Direct loops on one thread (the C++ specification)." : "";
  m.def(
      n_f,
      [n_f](const py::array& x, const py::array& kernel, const py::object& bias, Pair strides,
            Pair pads, Pair dilation, index_t groups, Pair out, const std::string& activation,
            bool keep_z) {
        const Activation act = activation_from_name(activation, n_f);
        const ConvDims d = conv_dims(n_f, x, kernel, strides, pads, dilation, groups, out);
        if (!bias.is_none()) check_like(n_f, bias, x, "bias", {d.F}, "(F,)");
        if (is_f32(x)) return forward_run<float>(Ref, d, x, kernel, bias, act, keep_z);
        return forward_run<double>(Ref, d, x, kernel, bias, act, keep_z);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias").none(true), py::arg("strides"),
      py::arg("pads"), py::arg("dilation"), py::arg("groups"), py::arg("out"),
      py::arg("activation"), py::arg("keep_z") = false,
      (std::string("y = act(conv(x, kernel) + bias), NHWC, kernel (KH, KW, C / groups, F); pads = (top, "
       "left) zero rows / columns, out = (OH, OW). keep_z: returns (y, z).") + note)
          .c_str());
  m.def(
      n_b,
      [n_b](const py::array& dy, const py::array& x, const py::array& kernel,
            const py::object& y, const py::object& z, Pair strides, Pair pads, Pair dilation,
            index_t groups, const std::string& activation, bool need_dx) {
        const Activation act = activation_from_name(activation, n_b);
        float_dtype(dy, n_b, "dy");
        check_ndim(dy, 4, n_b, "dy");
        const Pair out{dy.shape(1), dy.shape(2)};
        const ConvDims d = conv_dims(n_b, x, kernel, strides, pads, dilation, groups, out);
        check_like(n_b, dy, x, "dy", {d.B, d.OH, d.OW, d.F}, "(B, OH, OW, F)");
        if (y.is_none()) {
          if (act != Activation::linear)
            fail(n_b, std::string("y (the forward output) is needed for activation '") +
                          activation_name(act) + "'; got None");
        } else {
          check_like(n_b, y, x, "y", {d.B, d.OH, d.OW, d.F}, "(B, OH, OW, F)");
        }
        if (z.is_none()) {
          if (activation_needs_input(act))
            fail(n_b, std::string("z (the forward pre-activation) is needed for activation '") +
                          activation_name(act) + "'; got None");
        } else {
          check_like(n_b, z, x, "z", {d.B, d.OH, d.OW, d.F}, "(B, OH, OW, F)");
        }
        if (is_f32(x)) return backward_run<float>(Ref, d, dy, x, kernel, y, z, act, need_dx);
        return backward_run<double>(Ref, d, dy, x, kernel, y, z, act, need_dx);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y").none(true),
      py::arg("z").none(true), py::arg("strides"), py::arg("pads"), py::arg("dilation"),
      py::arg("groups"), py::arg("activation"), py::arg("need_dx") = true,
      (std::string("(dx or None, dkernel, dbias) of conv2d_forward from dy (B, OH, OW, F), the forward "
       "output y and, for gelu / silu, the pre-activation z.") + note)
          .c_str());
}

}  // namespace

void register_conv(py::module_& m) {
  def_conv<false>(m);
  def_conv<true>(m);
}

}  // namespace nanonet
