// optimizers: in-place parameter updates (SGD, Adam/AdamW, RMSprop, Adagrad, Adamax, Nadam,
// Lion), the sum of squares used for
// clipnorm / global_clipnorm, and the L1/L2 weight regulariser (value and gradient).
//
// Layout: every array is a flat, contiguous run of n elements (a parameter of any shape, seen as
// 1-D). The parameter p and its slots (velocity, m, v, momentum_buf, average_grad) have the same
// n and dtype as the gradient g; they are updated in place (read once, written once per element,
// in one fused pass). g is read only. No two arrays may overlap.
//
// Gradient preprocessing, inside the same pass (GradClip):
//   g' = g * grad_scale;  if clipvalue > 0: g' = clip(g', -clipvalue, clipvalue)
// The Python optimizer turns clipnorm into grad_scale = clipnorm / max(norm, clipnorm) per tensor
// (global_clipnorm: the same with the global norm from sum_squares over all gradients).
//
// Updates (Keras 3 semantics; lr is the learning rate of this step):
//   sgd       momentum == 0:  p -= lr * g'                        (velocity not touched)
//             momentum >  0:  velocity = momentum * velocity - lr * g'
//                             p += velocity                       (nesterov: p += momentum *
//                                                                  velocity - lr * g')
//   adam      weight_decay > 0: p -= p * (weight_decay * lr)      (decoupled, AdamW; first)
//             alpha = lr * sqrt(1 - beta_2^step) / (1 - beta_1^step)   (step >= 1, in double)
//             m += (g' - m) * (1 - beta_1);  v += (g'^2 - v) * (1 - beta_2)
//             p -= alpha * m / (sqrt(v) + epsilon)
//   rmsprop   velocity = rho * velocity + (1 - rho) * g'^2
//             centered: average_grad = rho * average_grad + (1 - rho) * g'
//                       denominator = velocity - average_grad^2 + epsilon
//             else:     denominator = velocity + epsilon
//             increment = lr * g' / sqrt(denominator)
//             momentum > 0: momentum_buf = momentum * momentum_buf + increment; p -= momentum_buf
//             else:         p -= increment
//             (momentum_buf is touched only when momentum > 0, average_grad only when centered)
//   adagrad   accumulator += g'^2;  p -= lr * g' / sqrt(accumulator + epsilon)
//             (the Python optimizer starts accumulator at initial_accumulator_value, 0.1)
//   adamax    m += (g' - m) * (1 - beta_1);  u = max(beta_2 * u, |g'|)
//             p -= (lr * m) / ((1 - beta_1^step) * (u + epsilon))
//   nadam     u_t = beta_1 (1 - 0.5 * 0.96^step),  u_t1 = beta_1 (1 - 0.5 * 0.96^(step + 1))
//             u_product = prod_{i = 1..step} u_i (kept by the caller; Keras's _u_product after
//             this step's update), u_product_1 = u_product * u_t1        (all in double)
//             m += (g' - m) * (1 - beta_1);  v += (g'^2 - v) * (1 - beta_2)
//             m_hat = u_t1 * m / (1 - u_product_1) + (1 - u_t) * g' / (1 - u_product)
//             v_hat = v / (1 - beta_2^step);  p -= (m_hat * lr) / (sqrt(v_hat) + epsilon)
//   lion      p -= lr * sign(m * beta_1 + g' * (1 - beta_1));  m = m * beta_2 + g' * (1 - beta_2)
//             (sign(0) = 0)
//   sum_squares(x)           = sum x^2                        accumulated in double
//   l1_l2_value(p, l1, l2)   = l1 * sum |p| + l2 * sum p^2    accumulated in double
//   l1_l2_grad_acc(g, p)     : g += l1 * sign(p) + 2 * l2 * p  (accumulates into g)
//
// Arithmetic is in T (float or double), hyperparameters rounded to T once, in the order written
// above; nanonet.reference.<name> computes the same expressions in NumPy.
//
// Validation: every entry point checks its hyperparameters and throws std::invalid_argument
// naming the function, the argument and its value: lr > 0 and finite; beta_1, beta_2, rho in
// [0, 1); epsilon >= 0 and finite; momentum in [0, 1]; weight_decay >= 0 and finite; step >= 1;
// grad_scale >= 0 and finite; clipvalue >= 0 (0 = off, +inf allowed); l1, l2 >= 0 and finite.
//
// Threads: the elementwise updates split n into blocks of kOptimBlock elements, shared between
// threads by a static `omp parallel for` when n >= kOptimParallelMin (smaller arrays stay on one
// thread). Each element is computed by the same expression whatever the thread count, so results
// are bit-identical for any number of threads and equal to the scalar *_ref twins. The reductions
// (sum_squares, l1_l2_value) sum fixed chunks of kReduceChunk elements (each with the same fixed
// set of partial accumulators), store one partial per chunk and add the partials in chunk order:
// the result does not depend on the thread count either. The *_ref twins are plain single-thread
// loops (their sums are sequential, so they differ from the fast sums by rounding only).
#pragma once
#include <cstdint>

#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kOptimBlock = 4096;           // elements per block of an elementwise update
constexpr index_t kOptimParallelMin = 1 << 15;  // fewer elements than this: one thread
constexpr index_t kReduceChunk = 4096;          // elements per partial sum of a reduction

struct GradClip {
  double grad_scale = 1.0;  // g' = g * grad_scale
  double clipvalue = 0.0;   // then clip to [-clipvalue, clipvalue]; 0 = off
};

struct SgdHyper {
  double lr = 0.01;
  double momentum = 0.0;
  bool nesterov = false;
};

struct AdamHyper {
  double lr = 0.001;
  std::int64_t step = 1;  // 1-based count of updates, this one included
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = 1e-7;
  double weight_decay = 0.0;
};

struct RmspropHyper {
  double lr = 0.001;
  double rho = 0.9;
  double momentum = 0.0;
  double epsilon = 1e-7;
  bool centered = false;
};

struct AdagradHyper {
  double lr = 0.001;
  double epsilon = 1e-7;
};

struct AdamaxHyper {
  double lr = 0.001;
  std::int64_t step = 1;
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = 1e-7;
};

struct NadamHyper {
  double lr = 0.001;
  std::int64_t step = 1;
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = 1e-7;
  double u_product = 0.9 * (1.0 - 0.5 * 0.96);  // prod_{i <= step} u_i (step 1 by default)
};

struct LionHyper {
  double lr = 0.001;
  double beta_1 = 0.9;
  double beta_2 = 0.99;
};

// Hyperparameter checks (also run by every update): std::invalid_argument "fn: arg must be ...".
void check_grad_clip(const char* fn, const GradClip& c);
void check_sgd(const char* fn, const SgdHyper& h);
void check_adam(const char* fn, const AdamHyper& h);
void check_rmsprop(const char* fn, const RmspropHyper& h);
void check_l1_l2(const char* fn, double l1, double l2);
void check_adagrad(const char* fn, const AdagradHyper& h);
void check_adamax(const char* fn, const AdamaxHyper& h);
void check_nadam(const char* fn, const NadamHyper& h);  // also u_product in [0, 1)
void check_lion(const char* fn, const LionHyper& h);    // beta_1, beta_2 in [0, 1]

// velocity may be null when momentum == 0.
template <typename T>
void sgd_update(T* p, T* velocity, const T* g, index_t n, const SgdHyper& h, const GradClip& c);
template <typename T>
void sgd_update_ref(T* p, T* velocity, const T* g, index_t n, const SgdHyper& h,
                    const GradClip& c);

template <typename T>
void adam_update(T* p, T* m, T* v, const T* g, index_t n, const AdamHyper& h, const GradClip& c);
template <typename T>
void adam_update_ref(T* p, T* m, T* v, const T* g, index_t n, const AdamHyper& h,
                     const GradClip& c);

// momentum_buf may be null when momentum == 0, average_grad when !centered.
template <typename T>
void rmsprop_update(T* p, T* velocity, T* momentum_buf, T* average_grad, const T* g, index_t n,
                    const RmspropHyper& h, const GradClip& c);
template <typename T>
void rmsprop_update_ref(T* p, T* velocity, T* momentum_buf, T* average_grad, const T* g,
                        index_t n, const RmspropHyper& h, const GradClip& c);

template <typename T>
void adagrad_update(T* p, T* accumulator, const T* g, index_t n, const AdagradHyper& h,
                    const GradClip& c);
template <typename T>
void adagrad_update_ref(T* p, T* accumulator, const T* g, index_t n, const AdagradHyper& h,
                        const GradClip& c);

template <typename T>
void adamax_update(T* p, T* m, T* u, const T* g, index_t n, const AdamaxHyper& h,
                   const GradClip& c);
template <typename T>
void adamax_update_ref(T* p, T* m, T* u, const T* g, index_t n, const AdamaxHyper& h,
                       const GradClip& c);

template <typename T>
void nadam_update(T* p, T* m, T* v, const T* g, index_t n, const NadamHyper& h,
                  const GradClip& c);
template <typename T>
void nadam_update_ref(T* p, T* m, T* v, const T* g, index_t n, const NadamHyper& h,
                      const GradClip& c);

template <typename T>
void lion_update(T* p, T* m, const T* g, index_t n, const LionHyper& h, const GradClip& c);
template <typename T>
void lion_update_ref(T* p, T* m, const T* g, index_t n, const LionHyper& h, const GradClip& c);

template <typename T>
double sum_squares(const T* x, index_t n);
template <typename T>
double sum_squares_ref(const T* x, index_t n);

template <typename T>
double l1_l2_value(const T* p, index_t n, double l1, double l2);
template <typename T>
double l1_l2_value_ref(const T* p, index_t n, double l1, double l2);

// Accumulates: g += l1 * sign(p) + 2 * l2 * p (sign(0) = 0, sign(NaN) = NaN).
template <typename T>
void l1_l2_grad_acc(T* g, const T* p, index_t n, double l1, double l2);
template <typename T>
void l1_l2_grad_acc_ref(T* g, const T* p, index_t n, double l1, double l2);

}  // namespace nanonet
