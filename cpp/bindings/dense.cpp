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

template <typename T>
py::array forward_run(bool use_ref, const DenseDims& d, const py::array& x,
                      const py::array& kernel, const py::object& bias, Activation act) {
  py::array y(x.dtype(), std::vector<py::ssize_t>{d.B, d.H});
  const T* px = cptr<T>(x);
  const T* pk = cptr<T>(kernel);
  const T* pb = bias.is_none() ? nullptr : cptr<T>(py::cast<py::array>(bias));
  T* py_ = mptr<T>(y);
  py::gil_scoped_release release;
  (use_ref ? dense_forward_ref<T> : dense_forward<T>)(py_, px, pk, pb, d.B, d.I, d.H, act);
  return y;
}

py::array forward_impl(const char* fn, bool use_ref, const py::array& x, const py::array& kernel,
                       const py::object& bias, const std::string& name) {
  const Activation act = activation_from_name(name, fn);
  const DenseDims d = dense_dims(fn, x, kernel);
  if (!bias.is_none()) {
    if (!py::isinstance<py::array>(bias))
      throw py::type_error(std::string(fn) + ": bias must be a numpy array or None");
    check_operand(fn, py::cast<py::array>(bias), x, "bias", {d.H}, "(H,)");
  }
  if (is_f32(x)) return forward_run<float>(use_ref, d, x, kernel, bias, act);
  return forward_run<double>(use_ref, d, x, kernel, bias, act);
}

template <typename T>
py::tuple backward_run(bool use_ref, const DenseDims& d, const py::array& dy, const py::array& x,
                       const py::array& kernel, const py::object& y, Activation act,
                       bool need_dx) {
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
  T* pdk = mptr<T>(dkernel);
  T* pdb = mptr<T>(dbias);
  T* pdz = dz.empty() ? nullptr : dz.data();
  {
    py::gil_scoped_release release;
    (use_ref ? dense_backward_ref<T> : dense_backward<T>)(pdx, pdk, pdb, pdz, pdy, px, pk, pyv,
                                                          d.B, d.I, d.H, act);
  }
  return py::make_tuple(dx_obj, dkernel, dbias);
}

py::tuple backward_impl(const char* fn, bool use_ref, const py::array& dy, const py::array& x,
                        const py::array& kernel, const py::object& y, const std::string& name,
                        bool need_dx) {
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
  if (is_f32(x)) return backward_run<float>(use_ref, d, dy, x, kernel, y, act, need_dx);
  return backward_run<double>(use_ref, d, dy, x, kernel, y, act, need_dx);
}

}  // namespace

void register_dense(py::module_& m) {
  m.def(
      "dense_forward",
      [](const py::array& x, const py::array& kernel, const py::object& bias,
         const std::string& activation) {
        return forward_impl("dense_forward", false, x, kernel, bias, activation);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias") = py::none(),
      py::arg("activation") = "linear",
      "y = f(x @ kernel + bias): x (B, I), kernel (I, H), bias (H,) or None; bias and "
      "elementwise f fused into the GEMM epilogue. Returns a new (B, H) array.");
  m.def(
      "dense_backward",
      [](const py::array& dy, const py::array& x, const py::array& kernel, const py::object& y,
         const std::string& activation, bool need_dx) {
        return backward_impl("dense_backward", false, dy, x, kernel, y, activation, need_dx);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y"),
      py::arg("activation") = "linear", py::arg("need_dx") = true,
      "(dx or None, dkernel, dbias) for y = f(x @ kernel + bias), from dy and the output y "
      "(None allowed for linear). New arrays.");
  m.def(
      "dense_forward_ref",
      [](const py::array& x, const py::array& kernel, const py::object& bias,
         const std::string& activation) {
        return forward_impl("dense_forward_ref", true, x, kernel, bias, activation);
      },
      py::arg("x"), py::arg("kernel"), py::arg("bias") = py::none(),
      py::arg("activation") = "linear",
      "dense_forward through the scalar C++ reference (gemm_ref, one thread).");
  m.def(
      "dense_backward_ref",
      [](const py::array& dy, const py::array& x, const py::array& kernel, const py::object& y,
         const std::string& activation, bool need_dx) {
        return backward_impl("dense_backward_ref", true, dy, x, kernel, y, activation, need_dx);
      },
      py::arg("dy"), py::arg("x"), py::arg("kernel"), py::arg("y"),
      py::arg("activation") = "linear", py::arg("need_dx") = true,
      "dense_backward through the scalar C++ reference (gemm_ref, one thread).");
}

}  // namespace nanonet
