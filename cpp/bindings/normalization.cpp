#include "nanonet/normalization.hpp"

#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

// x: a float32/float64 C-contiguous (N, F) matrix.
void check_rows(const py::array& x, const char* fn, const char* name) {
  float_dtype(x, fn, name);
  check_ndim(x, 2, fn, name);
  check_contiguous(x, fn, name);
}

// An optional (F,) vector of x's dtype (None -> nullptr). Must be an ndarray: it is never copied.
template <typename T>
T* opt_vec(const py::object& o, const py::array& x, index_t F, const char* fn, const char* name,
           bool writeable) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": " + name + " must be a numpy.ndarray or None; got " +
                         std::string(py::str(py::type::handle_of(o).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(o);
  same_dtype(x, a, fn, "x", name);
  check_shape(a, {F}, fn, name, "(F,)");
  check_contiguous(a, fn, name);
  if (writeable) check_writeable(a, fn, name);
  return static_cast<T*>(const_cast<void*>(a.data()));
}

// An optional (N,) bool mask (None -> nullptr).
const bool* opt_mask(const py::object& o, index_t N, const char* fn) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": mask must be a numpy.ndarray or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().is(py::dtype::of<bool>()))
    throw py::type_error(std::string(fn) + ": mask must be bool; got " +
                         std::string(py::str(a.dtype())));
  check_shape(a, {N}, fn, "mask", "(N,)");
  check_contiguous(a, fn, "mask");
  return static_cast<const bool*>(a.data());
}

// The (N, F) array `name` must match x in dtype and shape.
void check_like(const py::array& a, const py::array& x, const char* fn, const char* name) {
  same_dtype(x, a, fn, "x", name);
  check_shape(a, {index_t(x.shape(0)), index_t(x.shape(1))}, fn, name, "(N, F)");
  check_contiguous(a, fn, name);
}

template <bool Ref>
py::tuple bn_forward_impl(const char* fn, const py::array& x, const py::object& gamma,
                          const py::object& beta, const py::object& moving_mean,
                          const py::object& moving_var, bool training, double momentum,
                          double epsilon, const py::object& mask) {
  check_rows(x, fn, "x");
  const index_t N = x.shape(0), F = x.shape(1);
  if (!training && (moving_mean.is_none() || moving_var.is_none()))
    fail(fn, "moving_mean and moving_var are required when training=False");
  if (!(epsilon > 0.0)) fail(fn, "epsilon must be > 0; got " + std::to_string(epsilon));
  py::array y(x.dtype(), std::vector<py::ssize_t>{N, F});
  py::array mean(x.dtype(), std::vector<py::ssize_t>{F});
  py::array inv_std(x.dtype(), std::vector<py::ssize_t>{F});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* pg = opt_vec<T>(gamma, x, F, fn, "gamma", false);
    const T* pb = opt_vec<T>(beta, x, F, fn, "beta", false);
    T* pmm = opt_vec<T>(moving_mean, x, F, fn, "moving_mean", training);
    T* pmv = opt_vec<T>(moving_var, x, F, fn, "moving_var", training);
    const bool* pm = opt_mask(mask, N, fn);
    const T* px = cptr<T>(x);
    T* py_ = mptr<T>(y);
    T* pmean = mptr<T>(mean);
    T* pinv = mptr<T>(inv_std);
    py::gil_scoped_release release;
    if (Ref)
      batch_norm_forward_ref<T>(py_, pmean, pinv, pmm, pmv, px, pg, pb, pm, N, F, training,
                                T(momentum), T(epsilon));
    else
      batch_norm_forward<T>(py_, pmean, pinv, pmm, pmv, px, pg, pb, pm, N, F, training,
                            T(momentum), T(epsilon));
  };
  dispatch_float(x, run);
  return py::make_tuple(y, mean, inv_std);
}

template <bool Ref>
py::tuple bn_backward_impl(const char* fn, const py::array& dy, const py::array& x,
                           const py::array& mean, const py::array& inv_std,
                           const py::object& gamma, bool training, const py::object& mask) {
  check_rows(x, fn, "x");
  check_like(dy, x, fn, "dy");
  const index_t N = x.shape(0), F = x.shape(1);
  py::array dx(x.dtype(), std::vector<py::ssize_t>{N, F});
  py::array dgamma(x.dtype(), std::vector<py::ssize_t>{F});
  py::array dbeta(x.dtype(), std::vector<py::ssize_t>{F});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* pmean = opt_vec<T>(mean, x, F, fn, "mean", false);
    const T* pinv = opt_vec<T>(inv_std, x, F, fn, "inv_std", false);
    const T* pg = opt_vec<T>(gamma, x, F, fn, "gamma", false);
    const bool* pm = opt_mask(mask, N, fn);
    const T* pdy = cptr<T>(dy);
    const T* px = cptr<T>(x);
    T* pdx = mptr<T>(dx);
    T* pdg = mptr<T>(dgamma);
    T* pdb = mptr<T>(dbeta);
    py::gil_scoped_release release;
    if (Ref)
      batch_norm_backward_ref<T>(pdx, pdg, pdb, pdy, px, pmean, pinv, pg, pm, N, F, training);
    else
      batch_norm_backward<T>(pdx, pdg, pdb, pdy, px, pmean, pinv, pg, pm, N, F, training);
  };
  dispatch_float(x, run);
  return py::make_tuple(dx, dgamma, dbeta);
}

// An (N,) vector of x's dtype (layer norm statistics).
void check_row_stats(const py::array& a, const py::array& x, const char* fn, const char* name) {
  same_dtype(x, a, fn, "x", name);
  check_shape(a, {index_t(x.shape(0))}, fn, name, "(N,)");
  check_contiguous(a, fn, name);
}

template <bool Ref>
py::tuple ln_forward_impl(const char* fn, const py::array& x, const py::object& gamma,
                          const py::object& beta, double epsilon) {
  check_rows(x, fn, "x");
  const index_t N = x.shape(0), F = x.shape(1);
  if (!(epsilon > 0.0)) fail(fn, "epsilon must be > 0; got " + std::to_string(epsilon));
  py::array y(x.dtype(), std::vector<py::ssize_t>{N, F});
  py::array mean(x.dtype(), std::vector<py::ssize_t>{N});
  py::array inv_std(x.dtype(), std::vector<py::ssize_t>{N});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* pg = opt_vec<T>(gamma, x, F, fn, "gamma", false);
    const T* pb = opt_vec<T>(beta, x, F, fn, "beta", false);
    const T* px = cptr<T>(x);
    T* py_ = mptr<T>(y);
    T* pmean = mptr<T>(mean);
    T* pinv = mptr<T>(inv_std);
    py::gil_scoped_release release;
    if (Ref)
      layer_norm_forward_ref<T>(py_, pmean, pinv, px, pg, pb, N, F, T(epsilon));
    else
      layer_norm_forward<T>(py_, pmean, pinv, px, pg, pb, N, F, T(epsilon));
  };
  dispatch_float(x, run);
  return py::make_tuple(y, mean, inv_std);
}

template <bool Ref>
py::tuple ln_backward_impl(const char* fn, const py::array& dy, const py::array& x,
                           const py::array& mean, const py::array& inv_std,
                           const py::object& gamma) {
  check_rows(x, fn, "x");
  check_like(dy, x, fn, "dy");
  check_row_stats(mean, x, fn, "mean");
  check_row_stats(inv_std, x, fn, "inv_std");
  const index_t N = x.shape(0), F = x.shape(1);
  py::array dx(x.dtype(), std::vector<py::ssize_t>{N, F});
  py::array dgamma(x.dtype(), std::vector<py::ssize_t>{F});
  py::array dbeta(x.dtype(), std::vector<py::ssize_t>{F});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* pg = opt_vec<T>(gamma, x, F, fn, "gamma", false);
    const T* pdy = cptr<T>(dy);
    const T* px = cptr<T>(x);
    const T* pmean = cptr<T>(mean);
    const T* pinv = cptr<T>(inv_std);
    T* pdx = mptr<T>(dx);
    T* pdg = mptr<T>(dgamma);
    T* pdb = mptr<T>(dbeta);
    py::gil_scoped_release release;
    if (Ref)
      layer_norm_backward_ref<T>(pdx, pdg, pdb, pdy, px, pmean, pinv, pg, N, F);
    else
      layer_norm_backward<T>(pdx, pdg, pdb, pdy, px, pmean, pinv, pg, N, F);
  };
  dispatch_float(x, run);
  return py::make_tuple(dx, dgamma, dbeta);
}

template <bool Ref>
void def_normalization(py::module_& m) {
  // String literals: the lambdas keep these pointers for their error messages.
  const char* n_bnf = Ref ? "batch_norm_forward_ref" : "batch_norm_forward";
  const char* n_bnb = Ref ? "batch_norm_backward_ref" : "batch_norm_backward";
  const char* n_lnf = Ref ? "layer_norm_forward_ref" : "layer_norm_forward";
  const char* n_lnb = Ref ? "layer_norm_backward_ref" : "layer_norm_backward";
  const std::string note = Ref ? " Plain serial loops (the C++ specification)." : "";
  m.def(
      n_bnf,
      [n_bnf](const py::array& x, const py::object& gamma, const py::object& beta,
              const py::object& moving_mean, const py::object& moving_var, bool training,
              double momentum, double epsilon, const py::object& mask) {
        return bn_forward_impl<Ref>(n_bnf, x, gamma, beta, moving_mean, moving_var, training,
                                    momentum, epsilon, mask);
      },
      py::arg("x"), py::arg("gamma").none(true), py::arg("beta").none(true),
      py::arg("moving_mean").none(true), py::arg("moving_var").none(true),
      py::arg("training"), py::arg("momentum"), py::arg("epsilon"), py::arg("mask").none(true),
      ("Batch normalization of (N, F) rows -> (y, mean, inv_std); training=True uses batch "
       "statistics and updates moving_mean/moving_var in place." + note)
          .c_str());
  m.def(
      n_bnb,
      [n_bnb](const py::array& dy, const py::array& x, const py::array& mean,
              const py::array& inv_std, const py::object& gamma, bool training,
              const py::object& mask) {
        return bn_backward_impl<Ref>(n_bnb, dy, x, mean, inv_std, gamma, training, mask);
      },
      py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("inv_std"),
      py::arg("gamma").none(true), py::arg("training"), py::arg("mask").none(true),
      ("Gradients of batch_norm_forward -> (dx, dgamma, dbeta), all overwritten." + note)
          .c_str());
  m.def(
      n_lnf,
      [n_lnf](const py::array& x, const py::object& gamma, const py::object& beta,
              double epsilon) { return ln_forward_impl<Ref>(n_lnf, x, gamma, beta, epsilon); },
      py::arg("x"), py::arg("gamma").none(true), py::arg("beta").none(true), py::arg("epsilon"),
      ("Layer normalization of each row of (N, F) -> (y, mean, inv_std)." + note).c_str());
  m.def(
      n_lnb,
      [n_lnb](const py::array& dy, const py::array& x, const py::array& mean,
              const py::array& inv_std, const py::object& gamma) {
        return ln_backward_impl<Ref>(n_lnb, dy, x, mean, inv_std, gamma);
      },
      py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("inv_std"),
      py::arg("gamma").none(true),
      ("Gradients of layer_norm_forward -> (dx, dgamma, dbeta), all overwritten." + note)
          .c_str());
}

}  // namespace

void register_normalization(py::module_& m) {
  def_normalization<false>(m);
  def_normalization<true>(m);
}

}  // namespace nanonet
