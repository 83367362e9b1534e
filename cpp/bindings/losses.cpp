#include "nanonet/losses.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

// y_pred (P, C) float, C-contiguous; y_true (P, C) of its dtype, or (P,) int64 ids when sparse;
// sample_weight None or (P,) of its dtype.
void check_loss_args(const char* fn, const py::array& y_true, const py::array& y_pred,
                     const py::object& sample_weight, bool sparse) {
  float_dtype(y_pred, fn, "y_pred");
  check_ndim(y_pred, 2, fn, "y_pred");
  check_contiguous(y_pred, fn, "y_pred");
  const index_t P = y_pred.shape(0), C = y_pred.shape(1);
  if (sparse) {
    if (!y_true.dtype().is(py::dtype::of<std::int64_t>()))
      throw py::type_error(std::string(fn) + ": sparse y_true must be int64 class ids; got " +
                           std::string(py::str(y_true.dtype())));
    check_shape(y_true, {P}, fn, "y_true", "(P,)");
  } else {
    same_dtype(y_pred, y_true, fn, "y_pred", "y_true");
    check_shape(y_true, {P, C}, fn, "y_true", "(P, C)");
  }
  check_contiguous(y_true, fn, "y_true");
  if (!sample_weight.is_none()) {
    if (!py::isinstance<py::array>(sample_weight))
      throw py::type_error(std::string(fn) + ": sample_weight must be a numpy array or None");
    const auto w = py::cast<py::array>(sample_weight);
    same_dtype(y_pred, w, fn, "y_pred", "sample_weight");
    check_shape(w, {P}, fn, "sample_weight", "(P,)");
    check_contiguous(w, fn, "sample_weight");
  }
}

template <typename T>
py::tuple run_loss(Loss loss, bool fused, const py::array& y_true, const py::array& y_pred,
                   bool from_logits, const py::object& sample_weight, bool compute_grad) {
  const index_t P = y_pred.shape(0), C = y_pred.shape(1);
  py::object grad_obj = py::none();
  T* g = nullptr;
  if (compute_grad) {
    py::array grad(y_pred.dtype(), std::vector<py::ssize_t>{P, C});
    g = mptr<T>(grad);
    grad_obj = grad;
  }
  std::vector<double> loss_p(size_t(P > 0 ? P : 0));
  const bool sparse = loss == Loss::sparse_categorical_crossentropy;
  const T* yp = cptr<T>(y_pred);
  const T* yt = sparse ? nullptr : cptr<T>(y_true);
  const std::int64_t* ids = sparse ? cptr<std::int64_t>(y_true) : nullptr;
  const T* w = sample_weight.is_none() ? nullptr : cptr<T>(py::cast<py::array>(sample_weight));
  double value;
  {
    py::gil_scoped_release release;
    if (fused)
      value = softmax_cross_entropy<T>(g, loss_p.data(), yt, ids, yp, w, P, C);
    else if (sparse)
      value = loss_sparse<T>(g, loss_p.data(), ids, yp, w, P, C, from_logits);
    else
      value = loss_dense<T>(g, loss_p.data(), yt, yp, w, P, C, loss, from_logits);
  }
  return py::make_tuple(value, grad_obj);
}

}  // namespace

void register_losses(py::module_& m) {
  m.def(
      "loss",
      [](const std::string& name, const py::array& y_true, const py::array& y_pred,
         bool from_logits, const py::object& sample_weight, bool compute_grad) {
        const char* fn = "loss";
        const Loss loss = loss_from_name(name, fn);
        const bool sparse = loss == Loss::sparse_categorical_crossentropy;
        check_loss_args(fn, y_true, y_pred, sample_weight, sparse);
        if (is_f32(y_pred))
          return run_loss<float>(loss, false, y_true, y_pred, from_logits, sample_weight,
                                 compute_grad);
        return run_loss<double>(loss, false, y_true, y_pred, from_logits, sample_weight,
                                compute_grad);
      },
      py::arg("name"), py::arg("y_true"), py::arg("y_pred"), py::arg("from_logits") = false,
      py::arg("sample_weight") = py::none(), py::arg("compute_grad") = true,
      "(value, grad or None) of a Keras loss over y_pred (P, C); y_true (P, C), or (P,) int64 "
      "ids for sparse_categorical_crossentropy; sample_weight (P,) or None. "
      "value = sum(w * l) / P; grad = d value / d y_pred.");
  m.def(
      "softmax_cross_entropy",
      [](const py::array& y_true, const py::array& logits, bool sparse,
         const py::object& sample_weight) {
        const char* fn = "softmax_cross_entropy";
        check_loss_args(fn, y_true, logits, sample_weight, sparse);
        const Loss loss =
            sparse ? Loss::sparse_categorical_crossentropy : Loss::categorical_crossentropy;
        if (is_f32(logits))
          return run_loss<float>(loss, true, y_true, logits, true, sample_weight, true);
        return run_loss<double>(loss, true, y_true, logits, true, sample_weight, true);
      },
      py::arg("y_true"), py::arg("logits"), py::arg("sparse") = false,
      py::arg("sample_weight") = py::none(),
      "(value, dlogits): fused stable softmax + (sparse) categorical cross-entropy; "
      "dlogits = (softmax(logits) - onehot) * w / P.");
}

}  // namespace nanonet
