// Bindings for optimizers.hpp. Parameters and slots are updated in place, so they are taken as
// they are (noconvert, or a py::object for an optional slot) and must already be C-contiguous,
// writeable and of the gradient's dtype and shape: a copy would be updated silently otherwise.
// Each op is also bound as <name>_ref, the scalar single-thread twin.
#include "nanonet/optimizers.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

void check_same_shape(const py::array& a, const py::array& ref, const char* fn, const char* name,
                      const char* ref_name) {
  bool ok = a.ndim() == ref.ndim();
  for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == ref.shape(i);
  if (!ok)
    fail(fn, std::string(name) + " must have the shape of " + ref_name + " " + shape_str(ref) +
                 "; got " + shape_str(a));
}

// The gradient: float32/float64, C-contiguous (nanonet.ops copies one that is not); read only.
void check_grad(const py::array& g, const char* fn, const char* name) {
  float_dtype(g, fn, name);
  check_contiguous(g, fn, name);
}

// An array updated in place: g's dtype and shape, C-contiguous, writeable.
void check_inplace(const py::array& a, const py::array& g, const char* fn, const char* name,
                   const char* gname) {
  float_dtype(a, fn, name);
  same_dtype(g, a, fn, gname, name);
  check_same_shape(a, g, fn, name, gname);
  check_contiguous(a, fn, name);
  check_writeable(a, fn, name);
}

using Slot = std::optional<py::array>;

// An optional slot: None (nullopt), or an ndarray that passes check_inplace.
Slot optional_slot(const py::object& obj, const py::array& g, const char* fn,
                        const char* name, const char* gname) {
  if (obj.is_none()) return std::nullopt;
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(fn) + ": " + name +
                         " must be a numpy.ndarray updated in place (or None); got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  check_inplace(a, g, fn, name, gname);
  return a;
}

struct Span {
  const char* name;
  const py::array* arr;  // nullptr: absent
};

const py::array* opt_ptr(const Slot& s) { return s ? &*s : nullptr; }

// No array written in place may share memory with any other array of the call (the kernels
// read and write through restrict pointers).
void check_no_overlap(const char* fn, std::initializer_list<Span> spans) {
  std::vector<Span> v;
  for (const Span& s : spans)
    if (s.arr != nullptr && s.arr->nbytes() > 0) v.push_back(s);
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t j = i + 1; j < v.size(); ++j) {
      const char* a0 = static_cast<const char*>(v[i].arr->data());
      const char* b0 = static_cast<const char*>(v[j].arr->data());
      if (a0 < b0 + v[j].arr->nbytes() && b0 < a0 + v[i].arr->nbytes())
        fail(fn, std::string(v[i].name) + " and " + v[j].name +
                     " share memory; every array of an update must be distinct");
    }
}

template <typename T>
T* mptr_or_null(Slot& a) {
  return a ? static_cast<T*>(a->mutable_data()) : nullptr;
}

// ---- sgd

template <typename T>
void run_sgd(bool use_ref, py::array& p, Slot& vel, const py::array& g, const SgdHyper& h,
             const GradClip& c) {
  T* pp = mptr<T>(p);
  T* pv = mptr_or_null<T>(vel);
  const T* pg = cptr<T>(g);
  const index_t n = static_cast<index_t>(g.size());
  py::gil_scoped_release release;
  if (use_ref)
    sgd_update_ref<T>(pp, pv, pg, n, h, c);
  else
    sgd_update<T>(pp, pv, pg, n, h, c);
}

void sgd_impl(const char* fn, bool use_ref, py::array param, const py::array& grad,
              const py::object& velocity, double lr, double momentum, bool nesterov,
              double grad_scale, double clipvalue) {
  check_grad(grad, fn, "grad");
  check_inplace(param, grad, fn, "param", "grad");
  Slot vel = optional_slot(velocity, grad, fn, "velocity", "grad");
  const SgdHyper h{lr, momentum, nesterov};
  const GradClip c{grad_scale, clipvalue};
  check_sgd(fn, h);
  check_grad_clip(fn, c);
  if (momentum > 0.0 && !vel)
    fail(fn, "velocity is required when momentum > 0; got None");
  check_no_overlap(fn, {{"param", &param}, {"grad", &grad}, {"velocity", opt_ptr(vel)}});
  if (is_f32(grad))
    run_sgd<float>(use_ref, param, vel, grad, h, c);
  else
    run_sgd<double>(use_ref, param, vel, grad, h, c);
}

// ---- adam

template <typename T>
void run_adam(bool use_ref, py::array& p, py::array& m, py::array& v, const py::array& g,
              const AdamHyper& h, const GradClip& c) {
  T* pp = mptr<T>(p);
  T* pm = mptr<T>(m);
  T* pv = mptr<T>(v);
  const T* pg = cptr<T>(g);
  const index_t n = static_cast<index_t>(g.size());
  py::gil_scoped_release release;
  if (use_ref)
    adam_update_ref<T>(pp, pm, pv, pg, n, h, c);
  else
    adam_update<T>(pp, pm, pv, pg, n, h, c);
}

void adam_impl(const char* fn, bool use_ref, py::array param, const py::array& grad, py::array m,
               py::array v, double lr, std::int64_t step, double beta_1, double beta_2,
               double epsilon, double weight_decay, double grad_scale, double clipvalue) {
  check_grad(grad, fn, "grad");
  check_inplace(param, grad, fn, "param", "grad");
  check_inplace(m, grad, fn, "m", "grad");
  check_inplace(v, grad, fn, "v", "grad");
  const AdamHyper h{lr, step, beta_1, beta_2, epsilon, weight_decay};
  const GradClip c{grad_scale, clipvalue};
  check_adam(fn, h);
  check_grad_clip(fn, c);
  check_no_overlap(fn, {{"param", &param}, {"grad", &grad}, {"m", &m}, {"v", &v}});
  if (is_f32(grad))
    run_adam<float>(use_ref, param, m, v, grad, h, c);
  else
    run_adam<double>(use_ref, param, m, v, grad, h, c);
}

// ---- rmsprop

template <typename T>
void run_rmsprop(bool use_ref, py::array& p, py::array& vel, Slot& mbuf, Slot& ag,
                 const py::array& g, const RmspropHyper& h, const GradClip& c) {
  T* pp = mptr<T>(p);
  T* pv = mptr<T>(vel);
  T* pm = mptr_or_null<T>(mbuf);
  T* pa = mptr_or_null<T>(ag);
  const T* pg = cptr<T>(g);
  const index_t n = static_cast<index_t>(g.size());
  py::gil_scoped_release release;
  if (use_ref)
    rmsprop_update_ref<T>(pp, pv, pm, pa, pg, n, h, c);
  else
    rmsprop_update<T>(pp, pv, pm, pa, pg, n, h, c);
}

void rmsprop_impl(const char* fn, bool use_ref, py::array param, const py::array& grad,
                  py::array velocity, double lr, double rho, double momentum, double epsilon,
                  bool centered, const py::object& momentum_buf, const py::object& average_grad,
                  double grad_scale, double clipvalue) {
  check_grad(grad, fn, "grad");
  check_inplace(param, grad, fn, "param", "grad");
  check_inplace(velocity, grad, fn, "velocity", "grad");
  Slot mbuf = optional_slot(momentum_buf, grad, fn, "momentum_buf", "grad");
  Slot ag = optional_slot(average_grad, grad, fn, "average_grad", "grad");
  const RmspropHyper h{lr, rho, momentum, epsilon, centered};
  const GradClip c{grad_scale, clipvalue};
  check_rmsprop(fn, h);
  check_grad_clip(fn, c);
  if (momentum > 0.0 && !mbuf)
    fail(fn, "momentum_buf is required when momentum > 0; got None");
  if (centered && !ag)
    fail(fn, "average_grad is required when centered=True; got None");
  check_no_overlap(fn, {{"param", &param},
                        {"grad", &grad},
                        {"velocity", &velocity},
                        {"momentum_buf", opt_ptr(mbuf)},
                        {"average_grad", opt_ptr(ag)}});
  if (is_f32(grad))
    run_rmsprop<float>(use_ref, param, velocity, mbuf, ag, grad, h, c);
  else
    run_rmsprop<double>(use_ref, param, velocity, mbuf, ag, grad, h, c);
}

// ---- adagrad, adamax, nadam, lion: param and one or two slots, all required

// Runs kernel(p, s1, s2, g, n) on T pointers after the shared checks; s2 may be absent (null).
template <typename Kernel>
void run_slots(const char* fn, py::array& param, const py::array& grad, py::array& s1,
               const char* s1_name, py::array* s2, const char* s2_name, const Kernel& kernel) {
  check_grad(grad, fn, "grad");
  check_inplace(param, grad, fn, "param", "grad");
  check_inplace(s1, grad, fn, s1_name, "grad");
  if (s2) check_inplace(*s2, grad, fn, s2_name, "grad");
  check_no_overlap(fn, {{"param", &param}, {"grad", &grad}, {s1_name, &s1}, {s2_name, s2}});
  const index_t n = static_cast<index_t>(grad.size());
  dispatch_float(grad, [&](auto zero) {
    using T = decltype(zero);
    T* pp = mptr<T>(param);
    T* p1 = mptr<T>(s1);
    T* p2 = s2 ? mptr<T>(*s2) : nullptr;
    const T* pg = cptr<T>(grad);
    py::gil_scoped_release release;
    kernel(pp, p1, p2, pg, n);
  });
}

void adagrad_impl(const char* fn, bool use_ref, py::array param, const py::array& grad,
                  py::array accumulator, double lr, double epsilon, double grad_scale,
                  double clipvalue) {
  const AdagradHyper h{lr, epsilon};
  const GradClip c{grad_scale, clipvalue};
  check_adagrad(fn, h);
  check_grad_clip(fn, c);
  auto k = [&](auto* p, auto* a, auto*, const auto* g, index_t n) {
    using T = std::remove_pointer_t<decltype(p)>;
    (use_ref ? adagrad_update_ref<T> : adagrad_update<T>)(p, a, g, n, h, c);
  };
  run_slots(fn, param, grad, accumulator, "accumulator", nullptr, "", k);
}

void adamax_impl(const char* fn, bool use_ref, py::array param, const py::array& grad,
                 py::array m, py::array u, double lr, std::int64_t step, double beta_1,
                 double beta_2, double epsilon, double grad_scale, double clipvalue) {
  const AdamaxHyper h{lr, step, beta_1, beta_2, epsilon};
  const GradClip c{grad_scale, clipvalue};
  check_adamax(fn, h);
  check_grad_clip(fn, c);
  auto k = [&](auto* p, auto* a, auto* b, const auto* g, index_t n) {
    using T = std::remove_pointer_t<decltype(p)>;
    (use_ref ? adamax_update_ref<T> : adamax_update<T>)(p, a, b, g, n, h, c);
  };
  run_slots(fn, param, grad, m, "m", &u, "u", k);
}

void nadam_impl(const char* fn, bool use_ref, py::array param, const py::array& grad,
                py::array m, py::array v, double lr, std::int64_t step, double u_product,
                double beta_1, double beta_2, double epsilon, double grad_scale,
                double clipvalue) {
  const NadamHyper h{lr, step, beta_1, beta_2, epsilon, u_product};
  const GradClip c{grad_scale, clipvalue};
  check_nadam(fn, h);
  check_grad_clip(fn, c);
  auto k = [&](auto* p, auto* a, auto* b, const auto* g, index_t n) {
    using T = std::remove_pointer_t<decltype(p)>;
    (use_ref ? nadam_update_ref<T> : nadam_update<T>)(p, a, b, g, n, h, c);
  };
  run_slots(fn, param, grad, m, "m", &v, "v", k);
}

void lion_impl(const char* fn, bool use_ref, py::array param, const py::array& grad,
               py::array m, double lr, double beta_1, double beta_2, double grad_scale,
               double clipvalue) {
  const LionHyper h{lr, beta_1, beta_2};
  const GradClip c{grad_scale, clipvalue};
  check_lion(fn, h);
  check_grad_clip(fn, c);
  auto k = [&](auto* p, auto* a, auto*, const auto* g, index_t n) {
    using T = std::remove_pointer_t<decltype(p)>;
    (use_ref ? lion_update_ref<T> : lion_update<T>)(p, a, g, n, h, c);
  };
  run_slots(fn, param, grad, m, "m", nullptr, "", k);
}

// ---- reductions and the regulariser

template <typename T>
double run_sum_squares(bool use_ref, const py::array& x) {
  const T* px = cptr<T>(x);
  const index_t n = static_cast<index_t>(x.size());
  py::gil_scoped_release release;
  return use_ref ? sum_squares_ref<T>(px, n) : sum_squares<T>(px, n);
}

double sum_squares_impl(const char* fn, bool use_ref, const py::array& x) {
  float_dtype(x, fn, "x");
  check_contiguous(x, fn, "x");
  return is_f32(x) ? run_sum_squares<float>(use_ref, x) : run_sum_squares<double>(use_ref, x);
}

template <typename T>
double run_l1_l2_value(bool use_ref, const py::array& p, double l1, double l2) {
  const T* pp = cptr<T>(p);
  const index_t n = static_cast<index_t>(p.size());
  py::gil_scoped_release release;
  return use_ref ? l1_l2_value_ref<T>(pp, n, l1, l2) : l1_l2_value<T>(pp, n, l1, l2);
}

double l1_l2_value_impl(const char* fn, bool use_ref, const py::array& param, double l1,
                        double l2) {
  float_dtype(param, fn, "param");
  check_contiguous(param, fn, "param");
  check_l1_l2(fn, l1, l2);
  return is_f32(param) ? run_l1_l2_value<float>(use_ref, param, l1, l2)
                       : run_l1_l2_value<double>(use_ref, param, l1, l2);
}

template <typename T>
void run_l1_l2_grad_acc(bool use_ref, py::array& g, const py::array& p, double l1, double l2) {
  T* pg = mptr<T>(g);
  const T* pp = cptr<T>(p);
  const index_t n = static_cast<index_t>(p.size());
  py::gil_scoped_release release;
  if (use_ref)
    l1_l2_grad_acc_ref<T>(pg, pp, n, l1, l2);
  else
    l1_l2_grad_acc<T>(pg, pp, n, l1, l2);
}

void l1_l2_grad_acc_impl(const char* fn, bool use_ref, py::array grad, const py::array& param,
                         double l1, double l2) {
  float_dtype(param, fn, "param");
  check_contiguous(param, fn, "param");
  check_inplace(grad, param, fn, "grad", "param");
  check_l1_l2(fn, l1, l2);
  check_no_overlap(fn, {{"grad", &grad}, {"param", &param}});
  if (is_f32(param))
    run_l1_l2_grad_acc<float>(use_ref, grad, param, l1, l2);
  else
    run_l1_l2_grad_acc<double>(use_ref, grad, param, l1, l2);
}

// Binds name (fast) and name_ref (scalar twin) with the same arguments.
template <typename Make>
void def_pair(py::module_& m, const std::string& name, const Make& make, const std::string& doc) {
  make(m, name, false, doc);
  make(m, name + "_ref", true,
       "The scalar single-thread twin of " + name + " (the C++ specification).");
}

}  // namespace

void register_optimizers(py::module_& m) {
  def_pair(
      m, "sgd_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, const py::object& velocity,
                          double lr, double momentum, bool nesterov, double grad_scale,
                          double clipvalue) {
              sgd_impl(fn.c_str(), use_ref, param, grad, velocity, lr, momentum, nesterov, grad_scale,
                       clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("velocity").none(true),
            py::arg("lr"), py::arg("momentum") = 0.0, py::arg("nesterov") = false,
            py::arg("grad_scale") = 1.0, py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras SGD: g' = clip(grad * grad_scale, +-clipvalue); momentum == 0: "
      "param -= lr * g'; else velocity = momentum * velocity - lr * g', param += velocity "
      "(nesterov: param += momentum * velocity - lr * g').");

  def_pair(
      m, "adam_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, py::array m_, py::array v_,
                          double lr, std::int64_t step, double beta_1, double beta_2,
                          double epsilon, double weight_decay, double grad_scale,
                          double clipvalue) {
              adam_impl(fn.c_str(), use_ref, param, grad, m_, v_, lr, step, beta_1, beta_2, epsilon,
                        weight_decay, grad_scale, clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("m").noconvert(),
            py::arg("v").noconvert(), py::arg("lr"), py::arg("step"), py::arg("beta_1") = 0.9,
            py::arg("beta_2") = 0.999, py::arg("epsilon") = 1e-7, py::arg("weight_decay") = 0.0,
            py::arg("grad_scale") = 1.0, py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras Adam/AdamW (step is 1-based): param -= param * weight_decay * lr; "
      "m += (g' - m)(1 - beta_1); v += (g'^2 - v)(1 - beta_2); "
      "param -= lr * sqrt(1 - beta_2^step) / (1 - beta_1^step) * m / (sqrt(v) + epsilon).");

  def_pair(
      m, "rmsprop_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, py::array velocity, double lr,
                          double rho, double momentum, double epsilon, bool centered,
                          const py::object& momentum_buf, const py::object& average_grad,
                          double grad_scale, double clipvalue) {
              rmsprop_impl(fn.c_str(), use_ref, param, grad, velocity, lr, rho, momentum, epsilon,
                           centered, momentum_buf, average_grad, grad_scale, clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("velocity").noconvert(),
            py::arg("lr"), py::arg("rho") = 0.9, py::arg("momentum") = 0.0,
            py::arg("epsilon") = 1e-7, py::arg("centered") = false,
            py::arg("momentum_buf").none(true) = py::none(),
            py::arg("average_grad").none(true) = py::none(), py::arg("grad_scale") = 1.0,
            py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras 3 RMSprop: velocity = rho * velocity + (1 - rho) g'^2; centered: "
      "average_grad = rho * average_grad + (1 - rho) g', denominator = velocity - "
      "average_grad^2 + epsilon, else velocity + epsilon; increment = lr g' / sqrt(denominator); "
      "momentum > 0: momentum_buf = momentum * momentum_buf + increment, param -= momentum_buf; "
      "else param -= increment.");

  def_pair(
      m, "sum_squares",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](const py::array& x) { return sum_squares_impl(fn.c_str(), use_ref, x); },
            py::arg("x"), doc.c_str());
      },
      "sum(x^2) over a C-contiguous float32/float64 array, accumulated in float64; the same "
      "value for every thread count.");

  def_pair(
      m, "l1_l2_value",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](const py::array& param, double l1, double l2) {
              return l1_l2_value_impl(fn.c_str(), use_ref, param, l1, l2);
            },
            py::arg("param"), py::arg("l1") = 0.0, py::arg("l2") = 0.0, doc.c_str());
      },
      "Keras L1L2 regulariser value: l1 * sum|param| + l2 * sum param^2 (float64 "
      "accumulation; a term with a zero factor is skipped).");

  def_pair(
      m, "l1_l2_grad_acc",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array grad, const py::array& param, double l1, double l2) {
              l1_l2_grad_acc_impl(fn.c_str(), use_ref, grad, param, l1, l2);
            },
            py::arg("grad").noconvert(), py::arg("param"), py::arg("l1") = 0.0,
            py::arg("l2") = 0.0, doc.c_str());
      },
      "In place, accumulates the L1L2 gradient: grad += l1 * sign(param) + 2 * l2 * param.");
  def_pair(
      m, "adagrad_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, py::array accumulator,
                                 double lr, double epsilon, double grad_scale, double clipvalue) {
              adagrad_impl(fn.c_str(), use_ref, param, grad, accumulator, lr, epsilon,
                           grad_scale, clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("accumulator").noconvert(),
            py::arg("lr"), py::arg("epsilon") = 1e-7, py::arg("grad_scale") = 1.0,
            py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras Adagrad: accumulator += g'^2; param -= lr * g' / sqrt(accumulator + "
      "epsilon).");
  def_pair(
      m, "adamax_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, py::array m_,
                                 py::array u_, double lr, std::int64_t step, double beta_1,
                                 double beta_2, double epsilon, double grad_scale,
                                 double clipvalue) {
              adamax_impl(fn.c_str(), use_ref, param, grad, m_, u_, lr, step, beta_1, beta_2,
                          epsilon, grad_scale, clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("m").noconvert(),
            py::arg("u").noconvert(), py::arg("lr"), py::arg("step"), py::arg("beta_1") = 0.9,
            py::arg("beta_2") = 0.999, py::arg("epsilon") = 1e-7, py::arg("grad_scale") = 1.0,
            py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras Adamax (step is 1-based): m += (g' - m)(1 - beta_1); "
      "u = max(beta_2 u, |g'|); param -= lr m / ((1 - beta_1^step)(u + epsilon)).");
  def_pair(
      m, "nadam_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, py::array m_,
                                 py::array v_, double lr, std::int64_t step, double u_product,
                                 double beta_1, double beta_2, double epsilon,
                                 double grad_scale, double clipvalue) {
              nadam_impl(fn.c_str(), use_ref, param, grad, m_, v_, lr, step, u_product, beta_1,
                         beta_2, epsilon, grad_scale, clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("m").noconvert(),
            py::arg("v").noconvert(), py::arg("lr"), py::arg("step"), py::arg("u_product"),
            py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.999, py::arg("epsilon") = 1e-7,
            py::arg("grad_scale") = 1.0, py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras Nadam (step is 1-based; u_product = prod_{i <= step} beta_1 (1 - 0.5 * "
      "0.96^i)); equations in cpp/nanonet/optimizers.hpp.");
  def_pair(
      m, "lion_update",
      [&](py::module_& mod, const std::string& name, bool use_ref, const std::string& doc) {
        mod.def(
            name.c_str(),
            [fn = name, use_ref](py::array param, const py::array& grad, py::array m_,
                                 double lr, double beta_1, double beta_2, double grad_scale,
                                 double clipvalue) {
              lion_impl(fn.c_str(), use_ref, param, grad, m_, lr, beta_1, beta_2, grad_scale,
                        clipvalue);
            },
            py::arg("param").noconvert(), py::arg("grad"), py::arg("m").noconvert(),
            py::arg("lr"), py::arg("beta_1") = 0.9, py::arg("beta_2") = 0.99,
            py::arg("grad_scale") = 1.0, py::arg("clipvalue") = 0.0, doc.c_str());
      },
      "In place, Keras Lion: param -= lr * sign(beta_1 m + (1 - beta_1) g'); "
      "m = beta_2 m + (1 - beta_2) g'.");
}

}  // namespace nanonet
