#include "nanonet/optimizers.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace nanonet {

// ---------------------------------------------------------------------------------------------
// Hyperparameter checks

namespace {

std::string num_str(double x) {
  std::ostringstream s;
  s << std::setprecision(10) << x;
  return s.str();
}

[[noreturn]] void bad_arg(const char* fn, const char* arg, const char* expected, double got) {
  throw std::invalid_argument(std::string(fn) + ": " + arg + " must be " + expected + "; got " +
                              num_str(got));
}

void check_nonneg_finite(const char* fn, const char* arg, double x) {
  if (!(x >= 0.0 && std::isfinite(x))) bad_arg(fn, arg, ">= 0 and finite", x);
}
void check_unit_open(const char* fn, const char* arg, double x) {  // [0, 1)
  if (!(x >= 0.0 && x < 1.0)) bad_arg(fn, arg, "in [0, 1)", x);
}
void check_unit_closed(const char* fn, const char* arg, double x) {  // [0, 1]
  if (!(x >= 0.0 && x <= 1.0)) bad_arg(fn, arg, "in [0, 1]", x);
}

}  // namespace

void check_grad_clip(const char* fn, const GradClip& c) {
  // NaN is allowed: a NaN gradient norm under clipnorm gives NaN weights, as in Keras, and
  // TerminateOnNaN stops the run; it must not turn into an exception mid-training.
  if (!std::isnan(c.grad_scale)) check_nonneg_finite(fn, "grad_scale", c.grad_scale);
  if (!(c.clipvalue >= 0.0)) bad_arg(fn, "clipvalue", ">= 0 (0 = off)", c.clipvalue);
}

void check_sgd(const char* fn, const SgdHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);  // 0 is allowed: a schedule may decay to 0
  check_unit_closed(fn, "momentum", h.momentum);
}

void check_adam(const char* fn, const AdamHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);  // 0 is allowed: a schedule may decay to 0
  if (h.step < 1) bad_arg(fn, "step", ">= 1", static_cast<double>(h.step));
  check_unit_open(fn, "beta_1", h.beta_1);
  check_unit_open(fn, "beta_2", h.beta_2);
  check_nonneg_finite(fn, "epsilon", h.epsilon);
  check_nonneg_finite(fn, "weight_decay", h.weight_decay);
}

void check_rmsprop(const char* fn, const RmspropHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);  // 0 is allowed: a schedule may decay to 0
  check_unit_open(fn, "rho", h.rho);
  check_unit_closed(fn, "momentum", h.momentum);
  check_nonneg_finite(fn, "epsilon", h.epsilon);
}

void check_l1_l2(const char* fn, double l1, double l2) {
  check_nonneg_finite(fn, "l1", l1);
  check_nonneg_finite(fn, "l2", l2);
}

void check_adagrad(const char* fn, const AdagradHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);
  check_nonneg_finite(fn, "epsilon", h.epsilon);
}

void check_adamax(const char* fn, const AdamaxHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);
  if (h.step < 1) bad_arg(fn, "step", ">= 1", static_cast<double>(h.step));
  check_unit_open(fn, "beta_1", h.beta_1);
  check_unit_open(fn, "beta_2", h.beta_2);
  check_nonneg_finite(fn, "epsilon", h.epsilon);
}

void check_nadam(const char* fn, const NadamHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);
  if (h.step < 1) bad_arg(fn, "step", ">= 1", static_cast<double>(h.step));
  check_unit_open(fn, "beta_1", h.beta_1);
  check_unit_open(fn, "beta_2", h.beta_2);
  check_nonneg_finite(fn, "epsilon", h.epsilon);
  check_unit_open(fn, "u_product", h.u_product);
}

void check_lion(const char* fn, const LionHyper& h) {
  check_nonneg_finite(fn, "lr", h.lr);
  check_unit_closed(fn, "beta_1", h.beta_1);
  check_unit_closed(fn, "beta_2", h.beta_2);
}

namespace {

// ---------------------------------------------------------------------------------------------
// Shared pieces

// Gradient preprocessing with the clip bound as T; clipvalue 0 (off) becomes +inf, for which the
// clip is the identity (NaN stays NaN, as in np.clip).
template <typename T>
struct ClipT {
  T scale, bound;
  explicit ClipT(const GradClip& c)
      : scale(static_cast<T>(c.grad_scale)),
        bound(c.clipvalue > 0.0 ? static_cast<T>(c.clipvalue)
                                : std::numeric_limits<T>::infinity()) {}
};

template <typename T>
inline T prep_grad(T g, T scale, T bound) {
  g = g * scale;
  g = g < -bound ? -bound : g;
  return g > bound ? bound : g;
}

// Runs body(i0, i1) over blocks of kOptimBlock elements; threads share the blocks statically
// when n >= kOptimParallelMin.
template <typename Body>
void for_blocks(index_t n, const Body& body) {
  if (n < kOptimParallelMin) {
    if (n > 0) body(index_t{0}, n);
    return;
  }
  const index_t nblocks = (n + kOptimBlock - 1) / kOptimBlock;
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
  for (index_t b = 0; b < nblocks; ++b) {
    const index_t i0 = b * kOptimBlock;
    body(i0, std::min(n, i0 + kOptimBlock));
  }
}

// Fixed-chunk reduction: partial(c) for every chunk of kReduceChunk elements, added in chunk
// order. The chunk values do not depend on the thread count, nor does the ordered sum.
template <typename Partial>
double chunked_sum(index_t n, const Partial& partial) {
  const index_t nchunks = (n + kReduceChunk - 1) / kReduceChunk;
  if (n < kOptimParallelMin) {
    double total = 0.0;
    for (index_t c = 0; c < nchunks; ++c)
      total += partial(c * kReduceChunk, std::min(n, (c + 1) * kReduceChunk));
    return total;
  }
  std::vector<double> parts(static_cast<size_t>(nchunks));
#pragma omp parallel for schedule(static) num_threads(get_num_threads())
  for (index_t c = 0; c < nchunks; ++c)
    parts[static_cast<size_t>(c)] = partial(c * kReduceChunk, std::min(n, (c + 1) * kReduceChunk));
  double total = 0.0;
  for (double p : parts) total += p;
  return total;
}

// Sum of f(x_i) in double over x[i0, i1) with 8 interleaved accumulators (a fixed pattern, so
// the value is a function of the data and the bounds only).
template <typename T, typename F>
inline double chunk_sum8(const T* __restrict x, index_t i0, index_t i1, F f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t i = i0;
  for (; i + 8 <= i1; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += f(static_cast<double>(x[i + j]));
  double tail = 0.0;
  for (; i < i1; ++i) tail += f(static_cast<double>(x[i]));
  return (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) +
         tail;
}

template <typename T>
inline T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0));  // 0 -> 0, NaN -> NaN
}

// ---------------------------------------------------------------------------------------------
// Block kernels (restrict pointers, loop-invariant branches resolved at compile time)

// kMode: 0 = plain (no momentum), 1 = momentum, 2 = nesterov momentum.
template <typename T, int kMode>
void sgd_block(T* __restrict p, T* __restrict vel, const T* __restrict g, index_t i0, index_t i1,
               T lr, T mom, T scale, T bound) {
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    if (kMode == 0) {
      p[i] -= lr * gi;
    } else {
      const T v = mom * vel[i] - lr * gi;
      vel[i] = v;
      p[i] += kMode == 2 ? mom * v - lr * gi : v;
    }
  }
}

template <typename T, bool kDecay>
void adam_block(T* __restrict p, T* __restrict m, T* __restrict v, const T* __restrict g,
                index_t i0, index_t i1, T alpha, T one_b1, T one_b2, T eps, T wd_lr, T scale,
                T bound) {
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    T pi = p[i];
    if (kDecay) pi -= pi * wd_lr;
    T mi = m[i], vi = v[i];
    mi += (gi - mi) * one_b1;
    vi += (gi * gi - vi) * one_b2;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - alpha * mi / (std::sqrt(vi) + eps);
  }
}

template <typename T, bool kCentered, bool kMomentum>
void rmsprop_block(T* __restrict p, T* __restrict vel, T* __restrict mbuf, T* __restrict ag,
                   const T* __restrict g, index_t i0, index_t i1, T lr, T rho, T one_rho, T mom,
                   T eps, T scale, T bound) {
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    const T vi = rho * vel[i] + one_rho * (gi * gi);
    vel[i] = vi;
    T denom;
    if (kCentered) {
      const T ai = rho * ag[i] + one_rho * gi;
      ag[i] = ai;
      denom = vi - ai * ai + eps;
    } else {
      denom = vi + eps;
    }
    const T inc = lr * gi / std::sqrt(denom);
    if (kMomentum) {
      const T mb = mom * mbuf[i] + inc;
      mbuf[i] = mb;
      p[i] -= mb;
    } else {
      p[i] -= inc;
    }
  }
}

template <typename T, bool kL1, bool kL2>
void l1_l2_grad_block(T* __restrict g, const T* __restrict p, index_t i0, index_t i1, T l1,
                      T l2x2) {
  for (index_t i = i0; i < i1; ++i) {
    T r = T(0);
    if (kL1) r = l1 * sign_of(p[i]);
    if (kL2) r = kL1 ? r + l2x2 * p[i] : l2x2 * p[i];
    g[i] += r;
  }
}

double adam_alpha(const AdamHyper& h) {
  const double t = static_cast<double>(h.step);
  return h.lr * std::sqrt(1.0 - std::pow(h.beta_2, t)) / (1.0 - std::pow(h.beta_1, t));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SGD

template <typename T>
void sgd_update(T* p, T* velocity, const T* g, index_t n, const SgdHyper& h, const GradClip& c) {
  const char* fn = "sgd_update";
  check_sgd(fn, h);
  check_grad_clip(fn, c);
  const bool use_mom = h.momentum > 0.0;
  if (use_mom && velocity == nullptr)
    throw std::invalid_argument("sgd_update: velocity is required when momentum > 0");
  const ClipT<T> ct(c);
  const T lr = static_cast<T>(h.lr), mom = static_cast<T>(h.momentum);
  for_blocks(n, [&](index_t i0, index_t i1) {
    if (!use_mom)
      sgd_block<T, 0>(p, velocity, g, i0, i1, lr, mom, ct.scale, ct.bound);
    else if (h.nesterov)
      sgd_block<T, 2>(p, velocity, g, i0, i1, lr, mom, ct.scale, ct.bound);
    else
      sgd_block<T, 1>(p, velocity, g, i0, i1, lr, mom, ct.scale, ct.bound);
  });
}

template <typename T>
void sgd_update_ref(T* p, T* velocity, const T* g, index_t n, const SgdHyper& h,
                    const GradClip& c) {
  const char* fn = "sgd_update_ref";
  check_sgd(fn, h);
  check_grad_clip(fn, c);
  if (h.momentum > 0.0 && velocity == nullptr)
    throw std::invalid_argument("sgd_update_ref: velocity is required when momentum > 0");
  const T lr = static_cast<T>(h.lr), mom = static_cast<T>(h.momentum);
  const T scale = static_cast<T>(c.grad_scale), cv = static_cast<T>(c.clipvalue);
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * scale;
    if (c.clipvalue > 0.0) gi = std::isnan(gi) ? gi : std::min(std::max(gi, -cv), cv);
    if (h.momentum > 0.0) {
      velocity[i] = mom * velocity[i] - lr * gi;
      if (h.nesterov)
        p[i] += mom * velocity[i] - lr * gi;
      else
        p[i] += velocity[i];
    } else {
      p[i] -= lr * gi;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW

template <typename T>
void adam_update(T* p, T* m, T* v, const T* g, index_t n, const AdamHyper& h, const GradClip& c) {
  const char* fn = "adam_update";
  check_adam(fn, h);
  check_grad_clip(fn, c);
  const ClipT<T> ct(c);
  const T alpha = static_cast<T>(adam_alpha(h));
  const T one_b1 = static_cast<T>(1.0 - h.beta_1), one_b2 = static_cast<T>(1.0 - h.beta_2);
  const T eps = static_cast<T>(h.epsilon), wd_lr = static_cast<T>(h.weight_decay * h.lr);
  const bool decay = h.weight_decay > 0.0;
  for_blocks(n, [&](index_t i0, index_t i1) {
    if (decay)
      adam_block<T, true>(p, m, v, g, i0, i1, alpha, one_b1, one_b2, eps, wd_lr, ct.scale,
                          ct.bound);
    else
      adam_block<T, false>(p, m, v, g, i0, i1, alpha, one_b1, one_b2, eps, wd_lr, ct.scale,
                           ct.bound);
  });
}

template <typename T>
void adam_update_ref(T* p, T* m, T* v, const T* g, index_t n, const AdamHyper& h,
                     const GradClip& c) {
  const char* fn = "adam_update_ref";
  check_adam(fn, h);
  check_grad_clip(fn, c);
  const T alpha = static_cast<T>(adam_alpha(h));
  const T one_b1 = static_cast<T>(1.0 - h.beta_1), one_b2 = static_cast<T>(1.0 - h.beta_2);
  const T eps = static_cast<T>(h.epsilon), wd_lr = static_cast<T>(h.weight_decay * h.lr);
  const T scale = static_cast<T>(c.grad_scale), cv = static_cast<T>(c.clipvalue);
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * scale;
    if (c.clipvalue > 0.0) gi = std::isnan(gi) ? gi : std::min(std::max(gi, -cv), cv);
    if (h.weight_decay > 0.0) p[i] -= p[i] * wd_lr;
    m[i] += (gi - m[i]) * one_b1;
    v[i] += (gi * gi - v[i]) * one_b2;
    p[i] -= alpha * m[i] / (std::sqrt(v[i]) + eps);
  }
}

// ---------------------------------------------------------------------------------------------
// RMSprop

template <typename T>
void rmsprop_update(T* p, T* velocity, T* momentum_buf, T* average_grad, const T* g, index_t n,
                    const RmspropHyper& h, const GradClip& c) {
  const char* fn = "rmsprop_update";
  check_rmsprop(fn, h);
  check_grad_clip(fn, c);
  const bool use_mom = h.momentum > 0.0;
  if (use_mom && momentum_buf == nullptr)
    throw std::invalid_argument("rmsprop_update: momentum_buf is required when momentum > 0");
  if (h.centered && average_grad == nullptr)
    throw std::invalid_argument("rmsprop_update: average_grad is required when centered");
  const ClipT<T> ct(c);
  const T lr = static_cast<T>(h.lr), rho = static_cast<T>(h.rho);
  const T one_rho = static_cast<T>(1.0 - h.rho), mom = static_cast<T>(h.momentum);
  const T eps = static_cast<T>(h.epsilon);
  for_blocks(n, [&](index_t i0, index_t i1) {
#define NN_RMSPROP_BLOCK(C, M)                                                                 \
  rmsprop_block<T, C, M>(p, velocity, momentum_buf, average_grad, g, i0, i1, lr, rho, one_rho, \
                         mom, eps, ct.scale, ct.bound)
    if (h.centered) {
      if (use_mom)
        NN_RMSPROP_BLOCK(true, true);
      else
        NN_RMSPROP_BLOCK(true, false);
    } else {
      if (use_mom)
        NN_RMSPROP_BLOCK(false, true);
      else
        NN_RMSPROP_BLOCK(false, false);
    }
#undef NN_RMSPROP_BLOCK
  });
}

template <typename T>
void rmsprop_update_ref(T* p, T* velocity, T* momentum_buf, T* average_grad, const T* g,
                        index_t n, const RmspropHyper& h, const GradClip& c) {
  const char* fn = "rmsprop_update_ref";
  check_rmsprop(fn, h);
  check_grad_clip(fn, c);
  if (h.momentum > 0.0 && momentum_buf == nullptr)
    throw std::invalid_argument("rmsprop_update_ref: momentum_buf is required when momentum > 0");
  if (h.centered && average_grad == nullptr)
    throw std::invalid_argument("rmsprop_update_ref: average_grad is required when centered");
  const T lr = static_cast<T>(h.lr), rho = static_cast<T>(h.rho);
  const T one_rho = static_cast<T>(1.0 - h.rho), mom = static_cast<T>(h.momentum);
  const T eps = static_cast<T>(h.epsilon);
  const T scale = static_cast<T>(c.grad_scale), cv = static_cast<T>(c.clipvalue);
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * scale;
    if (c.clipvalue > 0.0) gi = std::isnan(gi) ? gi : std::min(std::max(gi, -cv), cv);
    velocity[i] = rho * velocity[i] + one_rho * (gi * gi);
    T denom = velocity[i] + eps;
    if (h.centered) {
      average_grad[i] = rho * average_grad[i] + one_rho * gi;
      denom = velocity[i] - average_grad[i] * average_grad[i] + eps;
    }
    const T increment = lr * gi / std::sqrt(denom);
    if (h.momentum > 0.0) {
      momentum_buf[i] = mom * momentum_buf[i] + increment;
      p[i] -= momentum_buf[i];
    } else {
      p[i] -= increment;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reductions

template <typename T>
double sum_squares(const T* x, index_t n) {
  return chunked_sum(n, [x](index_t i0, index_t i1) {
    return chunk_sum8(x, i0, i1, [](double t) { return t * t; });
  });
}

template <typename T>
double sum_squares_ref(const T* x, index_t n) {
  double s = 0.0;
  for (index_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

// Keras adds a term only when its factor is non-zero (so 0 * inf never makes a NaN).
template <typename T>
double l1_l2_value(const T* p, index_t n, double l1, double l2) {
  check_l1_l2("l1_l2_value", l1, l2);
  double value = 0.0;
  if (l1 != 0.0)
    value += l1 * chunked_sum(n, [p](index_t i0, index_t i1) {
      return chunk_sum8(p, i0, i1, [](double t) { return std::fabs(t); });
    });
  if (l2 != 0.0) value += l2 * sum_squares(p, n);
  return value;
}

template <typename T>
double l1_l2_value_ref(const T* p, index_t n, double l1, double l2) {
  check_l1_l2("l1_l2_value_ref", l1, l2);
  double s1 = 0.0, s2 = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(p[i]);
    s1 += std::fabs(t);
    s2 += t * t;
  }
  double value = 0.0;
  if (l1 != 0.0) value += l1 * s1;
  if (l2 != 0.0) value += l2 * s2;
  return value;
}

template <typename T>
void l1_l2_grad_acc(T* g, const T* p, index_t n, double l1, double l2) {
  check_l1_l2("l1_l2_grad_acc", l1, l2);
  const T l1t = static_cast<T>(l1), l2x2 = static_cast<T>(2.0 * l2);
  if (l1 != 0.0 && l2 != 0.0)
    for_blocks(n, [&](index_t i0, index_t i1) {
      l1_l2_grad_block<T, true, true>(g, p, i0, i1, l1t, l2x2);
    });
  else if (l1 != 0.0)
    for_blocks(n, [&](index_t i0, index_t i1) {
      l1_l2_grad_block<T, true, false>(g, p, i0, i1, l1t, l2x2);
    });
  else if (l2 != 0.0)
    for_blocks(n, [&](index_t i0, index_t i1) {
      l1_l2_grad_block<T, false, true>(g, p, i0, i1, l1t, l2x2);
    });
}

template <typename T>
void l1_l2_grad_acc_ref(T* g, const T* p, index_t n, double l1, double l2) {
  check_l1_l2("l1_l2_grad_acc_ref", l1, l2);
  const T l1t = static_cast<T>(l1), l2x2 = static_cast<T>(2.0 * l2);
  for (index_t i = 0; i < n; ++i) {
    const T s = p[i] > T(0) ? T(1) : (p[i] < T(0) ? T(-1) : p[i] * T(0));
    if (l1 != 0.0 && l2 != 0.0)
      g[i] += l1t * s + l2x2 * p[i];
    else if (l1 != 0.0)
      g[i] += l1t * s;
    else if (l2 != 0.0)
      g[i] += l2x2 * p[i];
  }
}

// ---------------------------------------------------------------------------------------------
// Adagrad, Adamax, Nadam, Lion

namespace {

template <typename T>
inline T ref_grad(T g, const GradClip& c) {
  T gi = g * static_cast<T>(c.grad_scale);
  const T cv = static_cast<T>(c.clipvalue);
  if (c.clipvalue > 0.0) gi = std::isnan(gi) ? gi : std::min(std::max(gi, -cv), cv);
  return gi;
}

template <typename T>
void adagrad_block(T* __restrict p, T* __restrict acc, const T* __restrict g, index_t i0,
                   index_t i1, T lr, T eps, T scale, T bound) {
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    const T a = acc[i] + gi * gi;
    acc[i] = a;
    p[i] -= lr * gi / std::sqrt(a + eps);
  }
}

template <typename T>
void adamax_block(T* __restrict p, T* __restrict m, T* __restrict u, const T* __restrict g,
                  index_t i0, index_t i1, T lr, T one_b1, T b2, T c1, T eps, T scale, T bound) {
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    T mi = m[i];
    mi += (gi - mi) * one_b1;
    const T a = b2 * u[i], ag = std::fabs(gi);
    const T ui = a < ag ? ag : a;
    m[i] = mi;
    u[i] = ui;
    p[i] -= (lr * mi) / (c1 * (ui + eps));
  }
}

// Nadam's per-step constants (double, rounded to T once).
template <typename T>
struct NadamConsts {
  T one_b1, one_b2, ut1, d1, one_ut, d0, d2, lr, eps;
  explicit NadamConsts(const NadamHyper& h) {
    const double t = static_cast<double>(h.step);
    const double u_t = h.beta_1 * (1.0 - 0.5 * std::pow(0.96, t));
    const double u_t1 = h.beta_1 * (1.0 - 0.5 * std::pow(0.96, t + 1.0));
    const double u_product_1 = h.u_product * u_t1;
    one_b1 = static_cast<T>(1.0 - h.beta_1);
    one_b2 = static_cast<T>(1.0 - h.beta_2);
    ut1 = static_cast<T>(u_t1);
    d1 = static_cast<T>(1.0 - u_product_1);
    one_ut = static_cast<T>(1.0 - u_t);
    d0 = static_cast<T>(1.0 - h.u_product);
    d2 = static_cast<T>(1.0 - std::pow(h.beta_2, t));
    lr = static_cast<T>(h.lr);
    eps = static_cast<T>(h.epsilon);
  }
};

template <typename T>
void nadam_block(T* __restrict p, T* __restrict m, T* __restrict v, const T* __restrict g,
                 index_t i0, index_t i1, const NadamConsts<T>& k, T scale, T bound) {
  const T one_b1 = k.one_b1, one_b2 = k.one_b2, ut1 = k.ut1, d1 = k.d1, one_ut = k.one_ut,
          d0 = k.d0, d2 = k.d2, lr = k.lr, eps = k.eps;
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    T mi = m[i], vi = v[i];
    mi += (gi - mi) * one_b1;
    vi += (gi * gi - vi) * one_b2;
    m[i] = mi;
    v[i] = vi;
    const T m_hat = ut1 * mi / d1 + one_ut * gi / d0;
    const T v_hat = vi / d2;
    p[i] -= (m_hat * lr) / (std::sqrt(v_hat) + eps);
  }
}

// 2^100 (float) / 2^600 (double): squared, it lifts the smallest subnormal above 2^50.
template <typename T>
constexpr T kSignScale = sizeof(T) == 4 ? T(0x1p100) : T(0x1p600);

template <typename T>
void lion_block(T* __restrict p, T* __restrict m, const T* __restrict g, index_t i0, index_t i1,
                T lr, T b1, T one_b1, T b2, T one_b2, T scale, T bound) {
  for (index_t i = i0; i < i1; ++i) {
    const T gi = prep_grad(g[i], scale, bound);
    const T mi = m[i];
    const T c = mi * b1 + gi * one_b1;
    // lr * sign(c), with +-0 for c = +-0 and NaN kept: c scaled past lr (the smallest
    // subnormal too; lr >= 0 is finite) and clamped to [-lr, lr], the min/max pattern the
    // vectoriser takes. A nested ternary, or a clamp to constant bounds, is control flow to
    // GCC 12 at -O2: the loop ran scalar, 8 ns an element.
    const T big = c * kSignScale<T> * kSignScale<T>;
    const T lo = big < -lr ? -lr : big;
    p[i] -= lo > lr ? lr : lo;
    m[i] = mi * b2 + gi * one_b2;
  }
}

}  // namespace

template <typename T>
void adagrad_update(T* p, T* accumulator, const T* g, index_t n, const AdagradHyper& h,
                    const GradClip& c) {
  check_adagrad("adagrad_update", h);
  check_grad_clip("adagrad_update", c);
  const ClipT<T> ct(c);
  const T lr = static_cast<T>(h.lr), eps = static_cast<T>(h.epsilon);
  for_blocks(n, [&](index_t i0, index_t i1) {
    adagrad_block<T>(p, accumulator, g, i0, i1, lr, eps, ct.scale, ct.bound);
  });
}

template <typename T>
void adagrad_update_ref(T* p, T* accumulator, const T* g, index_t n, const AdagradHyper& h,
                        const GradClip& c) {
  check_adagrad("adagrad_update_ref", h);
  check_grad_clip("adagrad_update_ref", c);
  const T lr = static_cast<T>(h.lr), eps = static_cast<T>(h.epsilon);
  for (index_t i = 0; i < n; ++i) {
    const T gi = ref_grad(g[i], c);
    accumulator[i] += gi * gi;
    p[i] -= lr * gi / std::sqrt(accumulator[i] + eps);
  }
}

template <typename T>
void adamax_update(T* p, T* m, T* u, const T* g, index_t n, const AdamaxHyper& h,
                   const GradClip& c) {
  check_adamax("adamax_update", h);
  check_grad_clip("adamax_update", c);
  const ClipT<T> ct(c);
  const T lr = static_cast<T>(h.lr), one_b1 = static_cast<T>(1.0 - h.beta_1);
  const T b2 = static_cast<T>(h.beta_2), eps = static_cast<T>(h.epsilon);
  const T c1 = static_cast<T>(1.0 - std::pow(h.beta_1, static_cast<double>(h.step)));
  for_blocks(n, [&](index_t i0, index_t i1) {
    adamax_block<T>(p, m, u, g, i0, i1, lr, one_b1, b2, c1, eps, ct.scale, ct.bound);
  });
}

template <typename T>
void adamax_update_ref(T* p, T* m, T* u, const T* g, index_t n, const AdamaxHyper& h,
                       const GradClip& c) {
  check_adamax("adamax_update_ref", h);
  check_grad_clip("adamax_update_ref", c);
  const T lr = static_cast<T>(h.lr), one_b1 = static_cast<T>(1.0 - h.beta_1);
  const T b2 = static_cast<T>(h.beta_2), eps = static_cast<T>(h.epsilon);
  const T c1 = static_cast<T>(1.0 - std::pow(h.beta_1, static_cast<double>(h.step)));
  for (index_t i = 0; i < n; ++i) {
    const T gi = ref_grad(g[i], c);
    m[i] += (gi - m[i]) * one_b1;
    u[i] = std::max(b2 * u[i], std::fabs(gi));
    p[i] -= (lr * m[i]) / (c1 * (u[i] + eps));
  }
}

template <typename T>
void nadam_update(T* p, T* m, T* v, const T* g, index_t n, const NadamHyper& h,
                  const GradClip& c) {
  check_nadam("nadam_update", h);
  check_grad_clip("nadam_update", c);
  const ClipT<T> ct(c);
  const NadamConsts<T> k(h);
  for_blocks(n, [&](index_t i0, index_t i1) {
    nadam_block<T>(p, m, v, g, i0, i1, k, ct.scale, ct.bound);
  });
}

template <typename T>
void nadam_update_ref(T* p, T* m, T* v, const T* g, index_t n, const NadamHyper& h,
                      const GradClip& c) {
  check_nadam("nadam_update_ref", h);
  check_grad_clip("nadam_update_ref", c);
  const NadamConsts<T> k(h);
  for (index_t i = 0; i < n; ++i) {
    const T gi = ref_grad(g[i], c);
    m[i] += (gi - m[i]) * k.one_b1;
    v[i] += (gi * gi - v[i]) * k.one_b2;
    const T m_hat = k.ut1 * m[i] / k.d1 + k.one_ut * gi / k.d0;
    p[i] -= (m_hat * k.lr) / (std::sqrt(v[i] / k.d2) + k.eps);
  }
}

template <typename T>
void lion_update(T* p, T* m, const T* g, index_t n, const LionHyper& h, const GradClip& c) {
  check_lion("lion_update", h);
  check_grad_clip("lion_update", c);
  const ClipT<T> ct(c);
  const T lr = static_cast<T>(h.lr), b1 = static_cast<T>(h.beta_1),
          one_b1 = static_cast<T>(1.0 - h.beta_1), b2 = static_cast<T>(h.beta_2),
          one_b2 = static_cast<T>(1.0 - h.beta_2);
  for_blocks(n, [&](index_t i0, index_t i1) {
    lion_block<T>(p, m, g, i0, i1, lr, b1, one_b1, b2, one_b2, ct.scale, ct.bound);
  });
}

template <typename T>
void lion_update_ref(T* p, T* m, const T* g, index_t n, const LionHyper& h, const GradClip& c) {
  check_lion("lion_update_ref", h);
  check_grad_clip("lion_update_ref", c);
  const T lr = static_cast<T>(h.lr), b1 = static_cast<T>(h.beta_1),
          one_b1 = static_cast<T>(1.0 - h.beta_1), b2 = static_cast<T>(h.beta_2),
          one_b2 = static_cast<T>(1.0 - h.beta_2);
  for (index_t i = 0; i < n; ++i) {
    const T gi = ref_grad(g[i], c);
    p[i] -= lr * sign_of(m[i] * b1 + gi * one_b1);
    m[i] = m[i] * b2 + gi * one_b2;
  }
}

// ---------------------------------------------------------------------------------------------
// Instantiations

#define NN_OPTIMIZERS_INSTANTIATE(T)                                                            \
  template void sgd_update<T>(T*, T*, const T*, index_t, const SgdHyper&, const GradClip&);     \
  template void sgd_update_ref<T>(T*, T*, const T*, index_t, const SgdHyper&, const GradClip&); \
  template void adam_update<T>(T*, T*, T*, const T*, index_t, const AdamHyper&,                 \
                               const GradClip&);                                                \
  template void adam_update_ref<T>(T*, T*, T*, const T*, index_t, const AdamHyper&,             \
                                   const GradClip&);                                            \
  template void rmsprop_update<T>(T*, T*, T*, T*, const T*, index_t, const RmspropHyper&,       \
                                  const GradClip&);                                             \
  template void rmsprop_update_ref<T>(T*, T*, T*, T*, const T*, index_t, const RmspropHyper&,   \
                                      const GradClip&);                                         \
  template double sum_squares<T>(const T*, index_t);                                            \
  template double sum_squares_ref<T>(const T*, index_t);                                        \
  template double l1_l2_value<T>(const T*, index_t, double, double);                            \
  template double l1_l2_value_ref<T>(const T*, index_t, double, double);                        \
  template void l1_l2_grad_acc<T>(T*, const T*, index_t, double, double);                       \
  template void l1_l2_grad_acc_ref<T>(T*, const T*, index_t, double, double);              \
  template void adagrad_update<T>(T*, T*, const T*, index_t, const AdagradHyper&,             \
                                  const GradClip&);                                            \
  template void adagrad_update_ref<T>(T*, T*, const T*, index_t, const AdagradHyper&,         \
                                      const GradClip&);                                        \
  template void adamax_update<T>(T*, T*, T*, const T*, index_t, const AdamaxHyper&,           \
                                 const GradClip&);                                             \
  template void adamax_update_ref<T>(T*, T*, T*, const T*, index_t, const AdamaxHyper&,       \
                                     const GradClip&);                                         \
  template void nadam_update<T>(T*, T*, T*, const T*, index_t, const NadamHyper&,             \
                                const GradClip&);                                              \
  template void nadam_update_ref<T>(T*, T*, T*, const T*, index_t, const NadamHyper&,         \
                                    const GradClip&);                                          \
  template void lion_update<T>(T*, T*, const T*, index_t, const LionHyper&, const GradClip&); \
  template void lion_update_ref<T>(T*, T*, const T*, index_t, const LionHyper&,               \
                                   const GradClip&);

NN_OPTIMIZERS_INSTANTIATE(float)
NN_OPTIMIZERS_INSTANTIATE(double)

#undef NN_OPTIMIZERS_INSTANTIATE

}  // namespace nanonet
