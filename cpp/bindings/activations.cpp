#include "nanonet/activations.hpp"

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

py::array forward_impl(const char* fn, bool use_ref, const py::array& x, const std::string& name) {
  const Activation act = activation_from_name(name, fn);
  const DType dt = float_dtype(x, fn, "x");
  check_contiguous(x, fn, "x");
  check_rowwise_rank(fn, x, "x", act);
  index_t rows, cols;
  rows_cols(x, rows, cols);
  py::array y = new_like(x);
  if (dt == DType::f32) {
    const float* px = cptr<float>(x);
    float* py_ = mptr<float>(y);
    py::gil_scoped_release release;
    (use_ref ? activation_forward_ref<float> : activation_forward<float>)(py_, px, rows, cols,
                                                                          act);
  } else {
    const double* px = cptr<double>(x);
    double* py_ = mptr<double>(y);
    py::gil_scoped_release release;
    (use_ref ? activation_forward_ref<double> : activation_forward<double>)(py_, px, rows, cols,
                                                                            act);
  }
  return y;
}

py::array backward_impl(const char* fn, bool use_ref, const py::array& dy, const py::array& y,
                        const std::string& name) {
  const Activation act = activation_from_name(name, fn);
  const DType dt = float_dtype(dy, fn, "dy");
  same_dtype(dy, y, fn, "dy", "y");
  check_contiguous(dy, fn, "dy");
  check_contiguous(y, fn, "y");
  bool same = dy.ndim() == y.ndim();
  for (py::ssize_t i = 0; same && i < dy.ndim(); ++i) same = dy.shape(i) == y.shape(i);
  if (!same) fail(fn, "y must have the shape of dy " + shape_str(dy) + "; got " + shape_str(y));
  check_rowwise_rank(fn, dy, "dy", act);
  index_t rows, cols;
  rows_cols(dy, rows, cols);
  py::array dx = new_like(dy);
  if (dt == DType::f32) {
    const float *pdy = cptr<float>(dy), *pyv = cptr<float>(y);
    float* pdx = mptr<float>(dx);
    py::gil_scoped_release release;
    (use_ref ? activation_backward_ref<float> : activation_backward<float>)(pdx, pdy, pyv, rows,
                                                                            cols, act);
  } else {
    const double *pdy = cptr<double>(dy), *pyv = cptr<double>(y);
    double* pdx = mptr<double>(dx);
    py::gil_scoped_release release;
    (use_ref ? activation_backward_ref<double> : activation_backward<double>)(pdx, pdy, pyv,
                                                                              rows, cols, act);
  }
  return dx;
}

}  // namespace

void register_activations(py::module_& m) {
  m.def(
      "activation_forward",
      [](const py::array& x, const std::string& activation) {
        return forward_impl("activation_forward", false, x, activation);
      },
      py::arg("x"), py::arg("activation"),
      "y = f(x) for a C-contiguous float32/float64 array of any shape; softmax and log_softmax "
      "normalise the last axis. Returns a new array.");
  m.def(
      "activation_backward",
      [](const py::array& dy, const py::array& y, const std::string& activation) {
        return backward_impl("activation_backward", false, dy, y, activation);
      },
      py::arg("dy"), py::arg("y"), py::arg("activation"),
      "dx from the upstream gradient dy and the forward OUTPUT y (same shape and dtype). "
      "Returns a new array.");
  m.def(
      "activation_forward_ref",
      [](const py::array& x, const std::string& activation) {
        return forward_impl("activation_forward_ref", true, x, activation);
      },
      py::arg("x"), py::arg("activation"),
      "activation_forward through the plain scalar C++ reference (std::exp, one thread).");
  m.def(
      "activation_backward_ref",
      [](const py::array& dy, const py::array& y, const std::string& activation) {
        return backward_impl("activation_backward_ref", true, dy, y, activation);
      },
      py::arg("dy"), py::arg("y"), py::arg("activation"),
      "activation_backward through the plain scalar C++ reference (one thread).");
}

}  // namespace nanonet
