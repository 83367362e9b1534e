#include "nanonet/dense.hpp"

#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

struct DenseDims {
  index_t B, I, H;
};

// x (B, I) and kernel (I, H): same float dtype, C-contiguous.
DenseDims dense_dims(const char* fn, const py::array& x, const py::array& kernel) {
  float_dtype(x, fn, "x");
  same_dtype(x, kernel, fn, "x", "kernel");
  check_ndim(x, 2, fn, "x");
  check_ndim(kernel, 2, fn, "kernel");
  check_contiguous(x, fn, "x");
  check_contiguous(kernel, fn, "kernel");
  DenseDims d{x.shape(0), x.shape(1), kernel.shape(1)};
  if (kernel.shape(0) != d.I)
    fail(fn, "kernel must be (I, H) with I = " + std::to_string(d.I) + " (x is " + shape_str(x) +
                 "); got " + shape_str(kernel));
  return d;
}

// An optional (B, H) or (H,) array: same dtype as x, C-contiguous, this exact shape.
void check_operand(const char* fn, const py::array& a, const py::array& x, const char* name,
                   std::initializer_list<index_t> dims, const char* letters) {
  same_dtype(x, a, fn, "x", name);
  check_shape(a, dims, fn, name, letters);
  check_contiguous(a, fn, name);
}

// keep_preactivation: one (2, B, H) array holding [y, z], z = x kernel + bias.
template <typename T>
py::array forward_run(bool use_ref, const DenseDims& d, const py::array& x,
                      const py::array& kernel, const py::object& bias, Activation act,
                      bool keep_z) {
  py::array y = keep_z ? py::array(x.dtype(), std::vector<py::ssize_t>{2, d.B, d.H})
                       : py::array(x.dtype(), std::vector<py::ssize_t>{d.B, d.H});
  const T* px = cptr<T>(x);
  const T* pk = cptr<T>(kernel);
  const T* pb = bias.is_none() ? nullptr : cptr<T>(py::cast<py::array>(bias));
  T* py_ = mptr<T>(y);
  T* pz = keep_z ? py_ + d.B * d.H : nullptr;
  py::gil_scoped_release release;
  (use_ref ? dense_forward_ref<T> : dense_forward<T>)(py_, pz, px, pk, pb, d.B, d.I, d.H, act);
  return y;
}

py::array forward_impl(const char* fn, bool use_ref, const py::array& x, const py::array& kernel,
                       const py::object& bias, const std::string& name, bool keep_z) {
  const Activation act = activation_from_name(name, fn);
  const DenseDims d = dense_dims(fn, x, kernel);
  if (!bias.is_none()) {
    if (!py::isinstance<py::array>(bias))
      throw py::type_error(std::string(fn) + ": bias must be a numpy array or None");
    check_operand(fn, py::cast<py::array>(bias), x, "bias", {d.H}, "(H,)");
  }
  if (is_f32(x)) return forward_run<float>(use_ref, d, x, kernel, bias, act, keep_z);
  return forward_run<double>(use_ref, d, x, kernel, bias, act, keep_z);
}

template <typename T>
py::tuple backward_run(bool use_ref, const DenseDims& d, const py::array& dy, const py::array& x,
                       const py::array& kernel, const py::object& y, const py::object& z,
                       Activation act, bool need_dx) {
  py::array dkernel(x.dtype(), std::vector<py::ssize_t>{d.I, d.H});
  py::array dbias(x.dtype(), std::vector<py::ssize_t>{d.H});
  py::object dx_obj = py::none();
  T* pdx = nullptr;
  if (need_dx) {
    py::array dx(x.dtype(), std::vector<py::ssize_t>{d.B, d.I});
    pdx = mptr<T>(dx);
    dx_obj = dx;
  }
  // workspace for dz = f'(y) dy; linear uses dy itself
  std::vector<T> dz(act == Activation::linear ? 0 : size_t(d.B) * size_t(d.H));
  const T* pdy = cptr<T>(dy);
  const T* px = cptr<T>(x);
  const T* pk = cptr<T>(kernel);
  const T* pyv = y.is_none() ? nullptr : cptr<T>(py::cast<py::array>(y));
  const T* pz = z.is_none() ? nullptr : cptr<T>(py::cast<py::array>(z));
  T* pdk = mptr<T>(dkernel);
  T* pdb = mptr<T>(dbias);
  T* pdz = dz.empty() ? nullptr : dz.data();
  {
    py::gil_scoped_release release;
    (use_ref ? dense_backward_ref<T> : dense_backward<T>)(pdx, pdk, pdb, pdz, pdy, px, pk, pyv,
                                                          pz, d.B, d.I, d.H, act);
  }
  return py::make_tuple(dx_obj, dkernel, dbias);
}

py::tuple backward_impl(const char* fn, bool use_ref, const py::array& dy, const py::array& x,
                        const py::array& kernel, const py::object& y, const std::string& name,
                        bool need_dx, const py::object& z) {
  const Activation act = activation_from_name(name, fn);
  const DenseDims d = dense_dims(fn, x, kernel);
  check_operand(fn, dy, x, "dy", {d.B, d.H}, "(B, H)");
  if (y.is_none()) {
    if (act != Activation::linear)
      fail(fn, std::string("y (the forward output) is needed for activation '") +
                   activation_name(act) + "'; got None");
  } else {
    if (!py::isinstance<py::array>(y))
      throw py::type_error(std::string(fn) + ": y must be a numpy array or None");
    check_operand(fn, py::cast<py::array>(y), x, "y", {d.B, d.H}, "(B, H)");
  }
  if (z.is_none()) {
    if (activation_needs_input(act))
      fail(fn, std::string("z (the forward pre-activation) is needed for activation '") +
                   activation_name(act) + "'; got None");
  } else {
    if (!py::isinstance<py::array>(z))
      throw py::type_error(std::string(fn) + ": z must be a numpy array or None");
    check_operand(fn, py::cast<py::array>(z), x, "z", {d.B, d.H}, "(B, H)");
  }
  if (is_f32(x)) return backward_run<float>(use_ref, d, dy, x, kernel, y, z, act, need_dx);
  return backward_run<double>(use_ref, d, dy, x, kernel, y, z, act, need_dx);
}

}  // namespace

void register_dense(py::module_& m) {
  m.def(
      "dense_forward",
      [](const py::array& x, const py::array& kernel, const py::object& bias,
         const std::string& activation, bool keep_preactivation) {
        return forward_impl("dense_forward", false, x, kernel, bias, activation,
                            keep_preactivation);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias") = py::none(),
      py::arg("activation") = "linear", py::arg("keep_preactivation") = false,
      "y = f(x @ kernel + bias): x (B, I), kernel (I, H), bias (H,) or None; bias and "
      "elementwise f fused into the GEMM epilogue. Returns a new (B, H) array; with "
      "keep_preactivation one (2, B, H) array holding [y, z], z = x @ kernel + bias.");
  m.def(
      "dense_backward",
      [](const py::array& dy, const py::array& x, const py::array& kernel, const py::object& y,
         const std::string& activation, bool need_dx, const py::object& z) {
        return backward_impl("dense_backward", false, dy, x, kernel, y, activation, need_dx, z);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y"),
      py::arg("activation") = "linear", py::arg("need_dx") = true, py::arg("z") = py::none(),
      "(dx or None, dkernel, dbias) for y = f(x @ kernel + bias), from dy and the output y "
      "(None allowed for linear) and, for gelu, gelu_approximate and silu, the pre-activation z "
      "(B, H). New arrays.");
  m.def(
      "dense_forward_ref",
      [](const py::array& x, const py::array& kernel, const py::object& bias,
         const std::string& activation, bool keep_preactivation) {
        return forward_impl("dense_forward_ref", true, x, kernel, bias, activation,
                            keep_preactivation);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias") = py::none(),
      py::arg("activation") = "linear", py::arg("keep_preactivation") = false,
      "dense_forward through the scalar C++ reference (gemm_ref, one thread).");
  m.def(
      "dense_backward_ref",
      [](const py::array& dy, const py::array& x, const py::array& kernel, const py::object& y,
         const std::string& activation, bool need_dx, const py::object& z) {
        return backward_impl("dense_backward_ref", true, dy, x, kernel, y, activation, need_dx,
                             z);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y"),
      py::arg("activation") = "linear", py::arg("need_dx") = true, py::arg("z") = py::none(),
      "dense_backward through the scalar C++ reference (gemm_ref, one thread).");
}

}  // namespace nanonet
