#include "nanonet/train_step.hpp"

#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

constexpr const char* kFn = "dense_chain_train_step";

py::array as_array(const py::handle& h, const std::string& name) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(std::string(kFn) + ": " + name + " must be a numpy array; got " +
                         std::string(py::str(py::type::of(h).attr("__name__"))));
  return py::reinterpret_borrow<py::array>(h);
}

// An array updated in place: x's dtype, n elements, C-contiguous, writeable.
void check_param(const py::array& a, const py::array& x, index_t n, const std::string& name) {
  same_dtype(x, a, kFn, "x", name.c_str());
  if (index_t(a.size()) != n)
    fail(kFn, name + " must hold " + std::to_string(n) + " elements; got shape " + shape_str(a));
  check_contiguous(a, kFn, name.c_str());
  check_writeable(a, kFn, name.c_str());
}

template <typename T>
py::tuple run(const py::array& x, const py::array& y_true, std::vector<py::array>& params,
              std::vector<std::vector<py::array>>& slots, const std::vector<index_t>& widths,
              const std::vector<Activation>& acts, const std::vector<bool>& has_bias, Loss loss,
              bool fused, bool from_logits, const DenseChainOptimizer& opt) {
  const index_t B = x.shape(0), C = widths.back();
  // params and slots run kernel, bias (when there is one), next layer ...
  size_t p = 0;
  auto take = [&](T** param, T** slot) {
    *param = mptr<T>(params[p]);
    for (size_t s = 0; s < 2; ++s) slot[s] = s < slots[p].size() ? mptr<T>(slots[p][s]) : nullptr;
    ++p;
  };
  std::vector<DenseChainLayer<T>> layers(acts.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    DenseChainLayer<T>& d = layers[l];
    d.in = widths[l];
    d.out = widths[l + 1];
    d.act = acts[l];
    d.bias = d.slots[1][0] = d.slots[1][1] = nullptr;
    take(&d.kernel, d.slots[0]);
    if (has_bias[l]) take(&d.bias, d.slots[1]);
  }
  py::array y_pred(x.dtype(), std::vector<py::ssize_t>{B, C});
  T* yp = mptr<T>(y_pred);
  const T* px = cptr<T>(x);
  const bool sparse = loss == Loss::sparse_categorical_crossentropy;
  const T* yt = sparse ? nullptr : cptr<T>(y_true);
  const std::int64_t* ids = sparse ? cptr<std::int64_t>(y_true) : nullptr;
  double value;
  {
    py::gil_scoped_release release;
    value = dense_chain_train_step<T>(yp, px, B, layers, loss, fused, from_logits, yt, ids, opt);
  }
  return py::make_tuple(value, y_pred);
}

}  // namespace

void register_train_step(py::module_& m) {
  m.def(
      kFn,
      [](const py::array& x, const py::array& y_true, const py::list& kernels,
         const py::list& biases, const py::list& activations, const std::string& loss_name,
         bool fused_softmax, bool from_logits, const std::string& optimizer, double lr,
         const py::tuple& hyper, double clipvalue, const py::list& slots) {
        float_dtype(x, kFn, "x");
        check_ndim(x, 2, kFn, "x");
        check_contiguous(x, kFn, "x");
        const size_t L = kernels.size();
        if (L == 0 || biases.size() != L || activations.size() != L)
          fail(kFn, "kernels, biases and activations must be non-empty lists of one length; "
                    "got " + std::to_string(L) + ", " + std::to_string(biases.size()) + ", " +
                    std::to_string(activations.size()));
        const Loss loss = loss_from_name(loss_name, kFn);
        const bool sparse = loss == Loss::sparse_categorical_crossentropy;
        if (sparse && !fused_softmax)
          fail(kFn, "sparse_categorical_crossentropy runs fused with a softmax output only");
        const bool adam = optimizer == "adam";
        if (!adam && optimizer != "sgd")
          fail(kFn, "optimizer must be 'sgd' or 'adam'; got '" + optimizer + "'");
        std::vector<index_t> widths{index_t(x.shape(1))};
        std::vector<Activation> acts;
        std::vector<bool> has_bias;
        std::vector<py::array> params;
        for (size_t l = 0; l < L; ++l) {
          const std::string k = "kernels[" + std::to_string(l) + "]";
          py::array kern = as_array(kernels[l], k);
          check_ndim(kern, 2, kFn, k.c_str());
          if (index_t(kern.shape(0)) != widths.back())
            fail(kFn, k + " must have " + std::to_string(widths.back()) + " rows (the width "
                      "before it); got shape " + shape_str(kern));
          widths.push_back(index_t(kern.shape(1)));
          check_param(kern, x, widths[l] * widths[l + 1], k);
          params.push_back(kern);
          has_bias.push_back(!biases[l].is_none());
          if (has_bias.back()) {
            const std::string b = "biases[" + std::to_string(l) + "]";
            py::array bias = as_array(biases[l], b);
            check_param(bias, x, widths[l + 1], b);
            params.push_back(bias);
          }
          const Activation act =
              activation_from_name(py::cast<std::string>(activations[l]), kFn);
          if (activation_needs_input(act))
            fail(kFn, std::string("activation '") + activation_name(act) +
                          "' needs the pre-activation; not supported here");
          acts.push_back(act);
        }
        if (fused_softmax && acts.back() != Activation::linear)
          fail(kFn, "a fused softmax output must be given as a linear last layer");
        const index_t B = x.shape(0), C = widths.back();
        if (sparse) {
          if (!y_true.dtype().is(py::dtype::of<std::int64_t>()))
            throw py::type_error(std::string(kFn) + ": sparse y_true must be int64 class ids");
          check_shape(y_true, {B}, kFn, "y_true", "(B,)");
        } else {
          same_dtype(x, y_true, kFn, "x", "y_true");
          check_shape(y_true, {B, C}, kFn, "y_true", "(B, C)");
        }
        check_contiguous(y_true, kFn, "y_true");
        if (slots.size() != params.size())
          fail(kFn, "slots must hold one list per parameter (" + std::to_string(params.size()) +
                        "); got " + std::to_string(slots.size()));
        DenseChainOptimizer opt;
        opt.adam = adam;
        opt.clip = GradClip{1.0, clipvalue};
        size_t want = 2;
        if (adam) {
          if (hyper.size() != 5) fail(kFn, "adam hyper must be (step, beta_1, beta_2, epsilon, "
                                           "weight_decay)");
          opt.adam_hyper = AdamHyper{lr, py::cast<std::int64_t>(hyper[0]),
                                     py::cast<double>(hyper[1]), py::cast<double>(hyper[2]),
                                     py::cast<double>(hyper[3]), py::cast<double>(hyper[4])};
        } else {
          if (hyper.size() != 2) fail(kFn, "sgd hyper must be (momentum, nesterov)");
          opt.sgd = SgdHyper{lr, py::cast<double>(hyper[0]), py::cast<bool>(hyper[1])};
          want = opt.sgd.momentum > 0.0 ? 1 : 0;
        }
        std::vector<std::vector<py::array>> slot_arrays(params.size());
        for (size_t p = 0; p < params.size(); ++p) {
          py::list sl = py::cast<py::list>(slots[p]);
          if (sl.size() != want)
            fail(kFn, "slots[" + std::to_string(p) + "] must hold " + std::to_string(want) +
                          " arrays; got " + std::to_string(sl.size()));
          for (size_t s = 0; s < want; ++s) {
            const std::string name = "slots[" + std::to_string(p) + "][" + std::to_string(s) + "]";
            py::array a = as_array(sl[s], name);
            check_param(a, x, index_t(params[p].size()), name);
            slot_arrays[p].push_back(a);
          }
        }
        if (is_f32(x))
          return run<float>(x, y_true, params, slot_arrays, widths, acts, has_bias, loss,
                            fused_softmax, from_logits, opt);
        return run<double>(x, y_true, params, slot_arrays, widths, acts, has_bias, loss,
                           fused_softmax, from_logits, opt);
      },
      py::arg("x"), py::arg("y_true"), py::arg("kernels"), py::arg("biases"),
      py::arg("activations"), py::arg("loss"), py::arg("fused_softmax"), py::arg("from_logits"),
      py::arg("optimizer"), py::arg("lr"), py::arg("hyper"), py::arg("clipvalue"),
      py::arg("slots"),
      "One training step of a chain of Dense layers (train_step.hpp): forward, loss, backward "
      "and the SGD / Adam update of every kernel and bias in place. Returns (loss value, y_pred "
      "(B, C): the last output, softmax probabilities when fused_softmax).");
}

}  // namespace nanonet
