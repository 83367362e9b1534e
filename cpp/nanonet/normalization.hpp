// normalization: batch normalization over rows and layer normalization over the last axis.
//
// Shapes: x is (N, F), row-major and contiguous: N rows (for a sequence input (B, T, F) the
// caller passes N = B * T) of F features. gamma, beta, mean, inv_std and the moving statistics
// of batch normalization are (F,); layer normalization's mean and inv_std are (N,). gamma may be
// null (scale=False: gamma = 1) and beta may be null (center=False: beta = 0).
//
// batch_norm_forward (statistics per feature f, over the rows n):
//   training:  w_n = mask[n] ? 1 : 0 (all 1 without a mask), W = sum_n w_n
//              mean_f = sum_n w_n x_nf / W
//              var_f  = sum_n w_n (x_nf - mean_f)^2 / W           (biased, two passes)
//              moving_mean_f = moving_mean_f * momentum + mean_f * (1 - momentum)    in place
//              moving_var_f  = moving_var_f  * momentum + var_f  * (1 - momentum)    in place
//              (moving_* may be null: no update). W == 0 (every row masked, or N == 0): the
//              statistics are mean = 0, var = 0 and the moving statistics are left unchanged.
//   inference: mean_f = moving_mean_f, var_f = moving_var_f (mask ignored, nothing updated).
//   both:      inv_std_f = 1 / sqrt(var_f + epsilon)
//              y_nf = (x_nf - mean_f) * inv_std_f * gamma_f + beta_f      (every row, masked too)
//   Overwrites y, mean, inv_std (the caches backward needs, with x and gamma).
//
// batch_norm_backward (x_hat_nf = (x_nf - mean_f) * inv_std_f; overwrites dx, dgamma, dbeta):
//   dbeta_f  = sum_n dy_nf
//   dgamma_f = sum_n dy_nf * x_hat_nf
//   training:  dx_nf = gamma_f * inv_std_f * (dy_nf - (w_n / W) * (dbeta_f + x_hat_nf * dgamma_f))
//              (mean and var depend on the unmasked rows only; every row's y depends on them)
//   inference: dx_nf = gamma_f * inv_std_f * dy_nf            (the statistics are constants)
//
// layer_norm_forward (statistics per row n, over the features f; overwrites y, mean, inv_std):
//   mean_n = sum_f x_nf / F,  var_n = sum_f (x_nf - mean_n)^2 / F,
//   inv_std_n = 1 / sqrt(var_n + epsilon),  y_nf = (x_nf - mean_n) * inv_std_n * gamma_f + beta_f
// layer_norm_backward (x_hat_nf = (x_nf - mean_n) * inv_std_n, g_nf = dy_nf * gamma_f;
//   overwrites dx, dgamma, dbeta):
//   dx_nf = inv_std_n * (g_nf - mean_f(g_n) - x_hat_nf * mean_f(g_n * x_hat_n))
//   dgamma_f = sum_n dy_nf * x_hat_nf,  dbeta_f = sum_n dy_nf
//
// Precision: every sum is accumulated in double, also for float.
// Threads: row-wise work is split by rows; a sum over rows (batch statistics, dgamma, dbeta) is
// split into fixed blocks of kNormRowBlock rows whose partial sums are added in block order, so
// results are bit-identical for every thread count. Two threads never write the same element.
// Small problems run on one thread. The *_ref twins are plain serial loops (the specification
// the fast routines are tested against); their rounding differs from the blocked sums.
#pragma once
#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kNormRowBlock = 64;  // rows per partial sum in the blocked reductions

template <typename T>
void batch_norm_forward(T* y, T* mean, T* inv_std, T* moving_mean, T* moving_var, const T* x,
                        const T* gamma, const T* beta, const bool* mask, index_t N, index_t F,
                        bool training, T momentum, T epsilon);
template <typename T>
void batch_norm_forward_ref(T* y, T* mean, T* inv_std, T* moving_mean, T* moving_var,
                            const T* x, const T* gamma, const T* beta, const bool* mask,
                            index_t N, index_t F, bool training, T momentum, T epsilon);

template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                         const T* inv_std, const T* gamma, const bool* mask, index_t N,
                         index_t F, bool training);
template <typename T>
void batch_norm_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* inv_std, const T* gamma, const bool* mask, index_t N,
                             index_t F, bool training);

template <typename T>
void layer_norm_forward(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta,
                        index_t N, index_t F, T epsilon);
template <typename T>
void layer_norm_forward_ref(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta,
                            index_t N, index_t F, T epsilon);

template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                         const T* inv_std, const T* gamma, index_t N, index_t F);
template <typename T>
void layer_norm_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* inv_std, const T* gamma, index_t N, index_t F);

}  // namespace nanonet
