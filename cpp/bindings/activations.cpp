#include "nanonet/activations.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

// rows = product of the leading dimensions, cols = the last one (a 0-d array is 1 x 1).
void rows_cols(const py::array& a, index_t& rows, index_t& cols) {
  rows = 1;
  cols = 1;
  for (py::ssize_t i = 0; i + 1 < a.ndim(); ++i) rows *= a.shape(i);
  if (a.ndim() > 0) cols = a.shape(a.ndim() - 1);
}

py::array new_like(const py::array& a) {
  return py::array(a.dtype(), std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

void check_rowwise_rank(const char* fn, const py::array& a, const char* name, Activation act) {
  if (activation_is_rowwise(act) && a.ndim() == 0)
    fail(fn, std::string(activation_name(act)) + " normalises the last axis, so " + name +
                 " must be at least 1-D; got a 0-d array");
}

// keep_input: return one (2, *x.shape) array holding [y, x] (x copied), so that a caller can
// keep the input that activation_needs_input backward passes read beside the output.
py::array forward_impl(const char* fn, bool use_ref, const py::array& x, const std::string& name,
                       bool keep_input) {
  const Activation act = activation_from_name(name, fn);
  float_dtype(x, fn, "x");
  check_contiguous(x, fn, "x");
  check_rowwise_rank(fn, x, "x", act);
  index_t rows, cols;
  rows_cols(x, rows, cols);
  py::array y;
  if (keep_input) {
    std::vector<py::ssize_t> shape{2};
    shape.insert(shape.end(), x.shape(), x.shape() + x.ndim());
    y = py::array(x.dtype(), shape);
  } else {
    y = new_like(x);
  }
  dispatch_float(x, [&](auto zero) {
    using T = decltype(zero);
    const T* px = cptr<T>(x);
    T* py_ = mptr<T>(y);
    py::gil_scoped_release release;
    (use_ref ? activation_forward_ref<T> : activation_forward<T>)(py_, px, rows, cols, act);
    if (keep_input) std::copy(px, px + rows * cols, py_ + rows * cols);
  });
  return y;
}

void check_same_shape(const char* fn, const py::array& dy, const py::array& a,
                      const char* name) {
  bool same = dy.ndim() == a.ndim();
  for (py::ssize_t i = 0; same && i < dy.ndim(); ++i) same = dy.shape(i) == a.shape(i);
  if (!same)
    fail(fn, std::string(name) + " must have the shape of dy " + shape_str(dy) + "; got " +
                 shape_str(a));
}

py::array backward_impl(const char* fn, bool use_ref, const py::array& dy, const py::array& y,
                        const std::string& name, const py::object& x_obj) {
  const Activation act = activation_from_name(name, fn);
  float_dtype(dy, fn, "dy");
  same_dtype(dy, y, fn, "dy", "y");
  check_contiguous(dy, fn, "dy");
  check_contiguous(y, fn, "y");
  check_same_shape(fn, dy, y, "y");
  py::array x;
  if (!x_obj.is_none()) {
    if (!py::isinstance<py::array>(x_obj))
      throw py::type_error(std::string(fn) + ": x must be a numpy array or None");
    x = py::cast<py::array>(x_obj);
    same_dtype(dy, x, fn, "dy", "x");
    check_contiguous(x, fn, "x");
    check_same_shape(fn, dy, x, "x");
  } else if (activation_needs_input(act)) {
    fail(fn, std::string("x (the forward input) is needed for activation '") +
                 activation_name(act) + "'; got None");
  }
  check_rowwise_rank(fn, dy, "dy", act);
  index_t rows, cols;
  rows_cols(dy, rows, cols);
  py::array dx = new_like(dy);
  dispatch_float(dy, [&](auto zero) {
    using T = decltype(zero);
    const T *pdy = cptr<T>(dy), *pyv = cptr<T>(y);
    const T* px = x_obj.is_none() ? nullptr : cptr<T>(x);
    T* pdx = mptr<T>(dx);
    py::gil_scoped_release release;
    (use_ref ? activation_backward_ref<T> : activation_backward<T>)(pdx, pdy, pyv, px, rows, cols,
                                                                    act);
  });
  return dx;
}

}  // namespace

void register_activations(py::module_& m) {
  m.def(
      "activation_forward",
      [](const py::array& x, const std::string& activation, bool keep_input) {
        return forward_impl("activation_forward", false, x, activation, keep_input);
      },
      py::arg("x"), py::arg("activation"), py::arg("keep_input") = false,
      "y = f(x) for a C-contiguous float32/float64 array of any shape; softmax and log_softmax "
      "normalise the last axis. Returns a new array; with keep_input one (2, *x.shape) array "
      "holding [y, x].");
  m.def(
      "activation_backward",
      [](const py::array& dy, const py::array& y, const std::string& activation,
         const py::object& x) {
        return backward_impl("activation_backward", false, dy, y, activation, x);
      },
      py::arg("dy"), py::arg("y"), py::arg("activation"), py::arg("x") = py::none(),
      "dx from the upstream gradient dy, the forward OUTPUT y and, for gelu, gelu_approximate "
      "and silu, the forward INPUT x (same shape and dtype). Returns a new array.");
  m.def(
      "activation_forward_ref",
      [](const py::array& x, const std::string& activation, bool keep_input) {
        return forward_impl("activation_forward_ref", true, x, activation, keep_input);
      },
      py::arg("x"), py::arg("activation"), py::arg("keep_input") = false,
      "activation_forward through the plain scalar C++ reference (std::exp, one thread).");
  m.def(
      "activation_backward_ref",
      [](const py::array& dy, const py::array& y, const std::string& activation,
         const py::object& x) {
        return backward_impl("activation_backward_ref", true, dy, y, activation, x);
      },
      py::arg("dy"), py::arg("y"), py::arg("activation"), py::arg("x") = py::none(),
      "activation_backward through the plain scalar C++ reference (one thread).");
}

}  // namespace nanonet
