// Batch and layer normalization kernels; the contract is in normalization.hpp.
#include "nanonet/normalization.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "nanonet/vecmath.hpp"

namespace nanonet {

namespace {

// Below this many elements a kernel stays on one thread.
constexpr index_t kNormParallelWork = index_t(1) << 15;

inline index_t num_blocks(index_t N) { return (N + kNormRowBlock - 1) / kNormRowBlock; }

// Adds the per-block partial sums part[b * K + k] in block order: out[k] = sum_b part[b * K + k].
inline void reduce_blocks(double* out, const std::vector<double>& part, index_t nb, index_t K) {
  for (index_t k = 0; k < K; ++k) out[k] = 0.0;
  for (index_t b = 0; b < nb; ++b) {
    const double* part_b = part.data() + b * K;
    for (index_t k = 0; k < K; ++k) out[k] += part_b[k];
  }
}

// W = number of rows that count (all of them without a mask).
inline index_t count_rows(const bool* mask, index_t N) {
  if (!mask) return N;
  index_t W = 0;
  for (index_t n = 0; n < N; ++n) W += mask[n] ? 1 : 0;
  return W;
}

// y_nf = (x_nf - mean_f) * inv_std_f * gamma_f + beta_f over all rows, split by rows.
template <typename T>
void bn_apply(T* y, const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta,
              index_t N, index_t F, bool par) {
  std::vector<T> scale(F), shift(F);
  for (index_t f = 0; f < F; ++f) {
    scale[f] = inv_std[f] * (gamma ? gamma[f] : T(1));
    shift[f] = beta ? beta[f] : T(0);
  }
  const T* sc = scale.data();
  const T* sh = shift.data();
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t n = 0; n < N; ++n) {
    const T* x_n = x + n * F;
    T* y_n = y + n * F;
    for (index_t f = 0; f < F; ++f) y_n[f] = (x_n[f] - mean[f]) * sc[f] + sh[f];
  }
}

// Statistics from sums: mean, var -> caches and moving statistics (shared by fast and ref).
template <typename T>
void bn_finish_stats(T* mean, T* inv_std, T* moving_mean, T* moving_var, const double* mean_d,
                     const double* var_d, index_t W, index_t F, T momentum, T epsilon) {
  for (index_t f = 0; f < F; ++f) {
    const T m = W > 0 ? T(mean_d[f]) : T(0);
    const T v = W > 0 ? T(var_d[f]) : T(0);
    mean[f] = m;
    inv_std[f] = T(1) / std::sqrt(v + epsilon);
    if (W > 0 && moving_mean) moving_mean[f] = moving_mean[f] * momentum + m * (T(1) - momentum);
    if (W > 0 && moving_var) moving_var[f] = moving_var[f] * momentum + v * (T(1) - momentum);
  }
}

template <typename T>
void bn_inference_stats(T* mean, T* inv_std, const T* moving_mean, const T* moving_var,
                        index_t F, T epsilon) {
  for (index_t f = 0; f < F; ++f) {
    mean[f] = moving_mean[f];
    inv_std[f] = T(1) / std::sqrt(moving_var[f] + epsilon);
  }
}

// dx_nf = k_f * (dy_nf - w_n * (a_f + x_hat_nf * b_f)) with w_n = 0 or 1, split by rows.
template <typename T>
void bn_dx(T* dx, const T* dy, const T* x, const T* mean, const T* inv_std, const double* k,
           const double* a, const double* b, const bool* mask, index_t N, index_t F, bool par) {
  std::vector<T> kk(F), aa(F), bb(F);
  for (index_t f = 0; f < F; ++f) {
    kk[f] = T(k[f]);
    aa[f] = T(a[f]);
    bb[f] = T(b[f]);
  }
  const T* pk = kk.data();
  const T* pa = aa.data();
  const T* pb = bb.data();
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t n = 0; n < N; ++n) {
    const T* dy_n = dy + n * F;
    const T* x_n = x + n * F;
    T* dx_n = dx + n * F;
    if (mask && !mask[n]) {
      for (index_t f = 0; f < F; ++f) dx_n[f] = pk[f] * dy_n[f];
    } else {
      for (index_t f = 0; f < F; ++f) {
        const T x_hat = (x_n[f] - mean[f]) * inv_std[f];
        dx_n[f] = pk[f] * (dy_n[f] - (pa[f] + x_hat * pb[f]));
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// batch_norm_forward

template <typename T>
void batch_norm_forward(T* y, T* mean, T* inv_std, T* moving_mean, T* moving_var, const T* x,
                        const T* gamma, const T* beta, const bool* mask, index_t N, index_t F,
                        bool training, T momentum, T epsilon) {
  const bool par = N * F >= kNormParallelWork;
  if (!training) {
    bn_inference_stats(mean, inv_std, moving_mean, moving_var, F, epsilon);
    bn_apply(y, x, mean, inv_std, gamma, beta, N, F, par);
    return;
  }
  const index_t W = count_rows(mask, N);
  const index_t nb = num_blocks(N);
  std::vector<double> part(static_cast<size_t>(nb * F));
  std::vector<double> mean_d(F), var_d(F);
  // Pass 1: sum_n w_n x_nf, by blocks of rows.
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < nb; ++b) {
    double* part_b = part.data() + b * F;
    for (index_t f = 0; f < F; ++f) part_b[f] = 0.0;
    const index_t n1 = std::min(N, (b + 1) * kNormRowBlock);
    for (index_t n = b * kNormRowBlock; n < n1; ++n) {
      if (mask && !mask[n]) continue;
      const T* x_n = x + n * F;
      for (index_t f = 0; f < F; ++f) part_b[f] += double(x_n[f]);
    }
  }
  reduce_blocks(mean_d.data(), part, nb, F);
  for (index_t f = 0; f < F; ++f) mean_d[f] = W > 0 ? mean_d[f] / double(W) : 0.0;
  // Pass 2: sum_n w_n (x_nf - mean_f)^2.
  const double* md = mean_d.data();
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < nb; ++b) {
    double* part_b = part.data() + b * F;
    for (index_t f = 0; f < F; ++f) part_b[f] = 0.0;
    const index_t n1 = std::min(N, (b + 1) * kNormRowBlock);
    for (index_t n = b * kNormRowBlock; n < n1; ++n) {
      if (mask && !mask[n]) continue;
      const T* x_n = x + n * F;
      for (index_t f = 0; f < F; ++f) {
        const double d = double(x_n[f]) - md[f];
        part_b[f] += d * d;
      }
    }
  }
  reduce_blocks(var_d.data(), part, nb, F);
  for (index_t f = 0; f < F; ++f) var_d[f] = W > 0 ? var_d[f] / double(W) : 0.0;
  bn_finish_stats(mean, inv_std, moving_mean, moving_var, mean_d.data(), var_d.data(), W, F,
                  momentum, epsilon);
  bn_apply(y, x, mean, inv_std, gamma, beta, N, F, par);
}

template <typename T>
void batch_norm_forward_ref(T* y, T* mean, T* inv_std, T* moving_mean, T* moving_var,
                            const T* x, const T* gamma, const T* beta, const bool* mask,
                            index_t N, index_t F, bool training, T momentum, T epsilon) {
  if (training) {
    const index_t W = count_rows(mask, N);
    std::vector<double> mean_d(F, 0.0), var_d(F, 0.0);
    for (index_t f = 0; f < F; ++f) {
      double s = 0.0;
      for (index_t n = 0; n < N; ++n)
        if (!mask || mask[n]) s += double(x[n * F + f]);
      mean_d[f] = W > 0 ? s / double(W) : 0.0;
      double q = 0.0;
      for (index_t n = 0; n < N; ++n)
        if (!mask || mask[n]) {
          const double d = double(x[n * F + f]) - mean_d[f];
          q += d * d;
        }
      var_d[f] = W > 0 ? q / double(W) : 0.0;
    }
    bn_finish_stats(mean, inv_std, moving_mean, moving_var, mean_d.data(), var_d.data(), W, F,
                    momentum, epsilon);
  } else {
    bn_inference_stats(mean, inv_std, moving_mean, moving_var, F, epsilon);
  }
  for (index_t n = 0; n < N; ++n)
    for (index_t f = 0; f < F; ++f)
      y[n * F + f] = (x[n * F + f] - mean[f]) * (inv_std[f] * (gamma ? gamma[f] : T(1))) +
                     (beta ? beta[f] : T(0));
}

// ---------------------------------------------------------------------------------------------
// batch_norm_backward

template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                         const T* inv_std, const T* gamma, const bool* mask, index_t N,
                         index_t F, bool training) {
  const bool par = N * F >= kNormParallelWork;
  const index_t nb = num_blocks(N);
  // Pass 1: partial sums of dy (k = 0) and dy * x_hat (k = 1) per block: part[b][k][f].
  std::vector<double> part(static_cast<size_t>(nb * 2 * F));
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < nb; ++b) {
    double* sdy_b = part.data() + b * 2 * F;
    double* sdyx_b = sdy_b + F;
    for (index_t f = 0; f < 2 * F; ++f) sdy_b[f] = 0.0;
    const index_t n1 = std::min(N, (b + 1) * kNormRowBlock);
    for (index_t n = b * kNormRowBlock; n < n1; ++n) {
      const T* dy_n = dy + n * F;
      const T* x_n = x + n * F;
      for (index_t f = 0; f < F; ++f) {
        const double x_hat = double((x_n[f] - mean[f]) * inv_std[f]);
        sdy_b[f] += double(dy_n[f]);
        sdyx_b[f] += double(dy_n[f]) * x_hat;
      }
    }
  }
  std::vector<double> sums(2 * F);
  reduce_blocks(sums.data(), part, nb, 2 * F);
  const double* sdy = sums.data();
  const double* sdyx = sums.data() + F;
  std::vector<double> k(F), a(F, 0.0), c(F, 0.0);
  const index_t W = training ? count_rows(mask, N) : 0;
  for (index_t f = 0; f < F; ++f) {
    dbeta[f] = T(sdy[f]);
    dgamma[f] = T(sdyx[f]);
    k[f] = double(inv_std[f]) * (gamma ? double(gamma[f]) : 1.0);
    if (W > 0) {
      a[f] = sdy[f] / double(W);
      c[f] = sdyx[f] / double(W);
    }
  }
  // Pass 2: dx by rows. Inference (or W == 0): a = c = 0 and dx = k * dy.
  bn_dx(dx, dy, x, mean, inv_std, k.data(), a.data(), c.data(), training ? mask : nullptr, N, F,
        par);
}

template <typename T>
void batch_norm_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* inv_std, const T* gamma, const bool* mask, index_t N,
                             index_t F, bool training) {
  const index_t W = training ? count_rows(mask, N) : 0;
  for (index_t f = 0; f < F; ++f) {
    double sdy = 0.0, sdyx = 0.0;
    for (index_t n = 0; n < N; ++n) {
      // x_hat = (x - mean) * inv_std
      const double x_hat = double((x[n * F + f] - mean[f]) * inv_std[f]);
      sdy += double(dy[n * F + f]);
      sdyx += double(dy[n * F + f]) * x_hat;
    }
    dbeta[f] = T(sdy);
    dgamma[f] = T(sdyx);
    const double k = double(inv_std[f]) * (gamma ? double(gamma[f]) : 1.0);
    for (index_t n = 0; n < N; ++n) {
      const double w = (W > 0 && (!mask || mask[n])) ? 1.0 : 0.0;
      const double x_hat = double((x[n * F + f] - mean[f]) * inv_std[f]);
      // dx = k * (dy - (w / W) * (sum dy + x_hat * sum dy x_hat))
      const double Wd = double(W > 0 ? W : 1);
      dx[n * F + f] = T(k * (double(dy[n * F + f]) - w * (sdy + x_hat * sdyx) / Wd));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// layer_norm_forward

namespace {

template <typename T>
inline void ln_row_forward(T* y_n, T* mean_n, T* inv_std_n, const T* x_n, const T* gamma,
                           const T* beta, index_t F, T epsilon) {
  double s = 0.0;
  for (index_t f = 0; f < F; ++f) s += double(x_n[f]);
  const double m = F > 0 ? s / double(F) : 0.0;
  double q = 0.0;
  for (index_t f = 0; f < F; ++f) {
    const double d = double(x_n[f]) - m;
    q += d * d;
  }
  const T mt = T(m);
  const T r = T(1) / std::sqrt(T(F > 0 ? q / double(F) : 0.0) + epsilon);
  *mean_n = mt;
  *inv_std_n = r;
  for (index_t f = 0; f < F; ++f)
    y_n[f] = (x_n[f] - mt) * r * (gamma ? gamma[f] : T(1)) + (beta ? beta[f] : T(0));
}

// dx for one row; adds dy and dy * x_hat into the column sums sdy, sdyx.
template <typename T>
inline void ln_row_backward(T* dx_n, double* sdy, double* sdyx, const T* dy_n, const T* x_n,
                            T mean_n, T inv_std_n, const T* gamma, index_t F) {
  double sg = 0.0, sgx = 0.0;
  for (index_t f = 0; f < F; ++f) {
    const double x_hat = double((x_n[f] - mean_n) * inv_std_n);
    const double g = double(dy_n[f]) * (gamma ? double(gamma[f]) : 1.0);
    sg += g;
    sgx += g * x_hat;
    sdy[f] += double(dy_n[f]);
    sdyx[f] += double(dy_n[f]) * x_hat;
  }
  const double mg = F > 0 ? sg / double(F) : 0.0;
  const double mgx = F > 0 ? sgx / double(F) : 0.0;
  for (index_t f = 0; f < F; ++f) {
    const double x_hat = double((x_n[f] - mean_n) * inv_std_n);
    const double g = double(dy_n[f]) * (gamma ? double(gamma[f]) : 1.0);
    dx_n[f] = T(double(inv_std_n) * (g - mg - x_hat * mgx));
  }
}

// The fast rows: the same sums in double, as vectorised reductions (NN_SIMD_SUM: lane-wise
// partial sums, so they differ from the sequential ones of the _ref twin by rounding), in
// ISA-cloned loops over a span of rows. The row loops were scalar: 0.9 ms forward and 1.3 ms
// backward for 3200 x 128 (the Transformer showcase's shape).
template <typename T>
NN_ALWAYS_INLINE void ln_rows_forward_body(T* y, T* mean, T* inv_std, const T* x,
                                                const T* gamma, const T* beta, index_t n0,
                                                index_t n1, index_t F, T epsilon) {
  for (index_t n = n0; n < n1; ++n) {
    const T* x_n = x + n * F;
    T* y_n = y + n * F;
    double s = 0.0;
    NN_SIMD_SUM(s)
    for (index_t f = 0; f < F; ++f) s += double(x_n[f]);
    const double m = F > 0 ? s / double(F) : 0.0;
    double q = 0.0;
    NN_SIMD_SUM(q)
    for (index_t f = 0; f < F; ++f) {
      const double d = double(x_n[f]) - m;
      q += d * d;
    }
    const T mt = T(m);
    const T r = T(1) / std::sqrt(T(F > 0 ? q / double(F) : 0.0) + epsilon);
    mean[n] = mt;
    inv_std[n] = r;
    if (gamma && beta) {
      NN_PRAGMA_SIMD
      for (index_t f = 0; f < F; ++f) y_n[f] = (x_n[f] - mt) * r * gamma[f] + beta[f];
    } else {
      NN_PRAGMA_SIMD
      for (index_t f = 0; f < F; ++f)
        y_n[f] = (x_n[f] - mt) * r * (gamma ? gamma[f] : T(1)) + (beta ? beta[f] : T(0));
    }
  }
}

// dx for rows [n0, n1); their column sums of dy and dy * x_hat added into sdy, sdyx. gamma:
// never null here (ones when the layer has none).
template <typename T>
NN_ALWAYS_INLINE void ln_rows_backward_body(T* dx, double* sdy, double* sdyx, const T* dy,
                                                 const T* x, const T* mean, const T* inv_std,
                                                 const T* gamma, index_t n0, index_t n1,
                                                 index_t F) {
  for (index_t n = n0; n < n1; ++n) {
    const T* x_n = x + n * F;
    const T* dy_n = dy + n * F;
    T* dx_n = dx + n * F;
    const T mean_n = mean[n], inv_std_n = inv_std[n];
    double sg = 0.0, sgx = 0.0;
    NN_PRAGMA_SIMD
    for (index_t f = 0; f < F; ++f) {
      const double x_hat = double((x_n[f] - mean_n) * inv_std_n);
      sdy[f] += double(dy_n[f]);
      sdyx[f] += double(dy_n[f]) * x_hat;
    }
    NN_PRAGMA(omp simd reduction(+ : sg, sgx))
    for (index_t f = 0; f < F; ++f) {
      const double x_hat = double((x_n[f] - mean_n) * inv_std_n);
      const double g = double(dy_n[f]) * double(gamma[f]);
      sg += g;
      sgx += g * x_hat;
    }
    const double mg = F > 0 ? sg / double(F) : 0.0;
    const double mgx = F > 0 ? sgx / double(F) : 0.0;
    NN_PRAGMA_SIMD
    for (index_t f = 0; f < F; ++f) {
      const double x_hat = double((x_n[f] - mean_n) * inv_std_n);
      const double g = double(dy_n[f]) * double(gamma[f]);
      dx_n[f] = T(double(inv_std_n) * (g - mg - x_hat * mgx));
    }
  }
}

NN_ISA_CLONES(void, ln_rows_forward, (float* y, float* mean, float* inv_std, const float* x,
              const float* gamma, const float* beta, index_t n0, index_t n1, index_t F,
              float epsilon), (y, mean, inv_std, x, gamma, beta, n0, n1, F, epsilon),
              ln_rows_forward_body)
NN_ISA_CLONES_F64(void, ln_rows_forward, (double* y, double* mean, double* inv_std,
                  const double* x, const double* gamma, const double* beta, index_t n0,
                  index_t n1, index_t F, double epsilon),
                  (y, mean, inv_std, x, gamma, beta, n0, n1, F, epsilon), ln_rows_forward_body)
NN_ISA_CLONES(void, ln_rows_backward, (float* dx, double* sdy, double* sdyx, const float* dy,
              const float* x, const float* mean, const float* inv_std, const float* gamma,
              index_t n0, index_t n1, index_t F),
              (dx, sdy, sdyx, dy, x, mean, inv_std, gamma, n0, n1, F), ln_rows_backward_body)
NN_ISA_CLONES_F64(void, ln_rows_backward, (double* dx, double* sdy, double* sdyx,
                  const double* dy, const double* x, const double* mean, const double* inv_std,
                  const double* gamma, index_t n0, index_t n1, index_t F),
                  (dx, sdy, sdyx, dy, x, mean, inv_std, gamma, n0, n1, F),
                  ln_rows_backward_body)

}  // namespace

template <typename T>
void layer_norm_forward(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta,
                        index_t N, index_t F, T epsilon) {
  const bool par = N * F >= kNormParallelWork;
  const index_t nb = num_blocks(N);
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < nb; ++b)
    ln_rows_forward(y, mean, inv_std, x, gamma, beta, b * kNormRowBlock,
                    std::min(N, (b + 1) * kNormRowBlock), F, epsilon);
}

template <typename T>
void layer_norm_forward_ref(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta,
                            index_t N, index_t F, T epsilon) {
  for (index_t n = 0; n < N; ++n)
    ln_row_forward(y + n * F, mean + n, inv_std + n, x + n * F, gamma, beta, F, epsilon);
}

// ---------------------------------------------------------------------------------------------
// layer_norm_backward

template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                         const T* inv_std, const T* gamma, index_t N, index_t F) {
  const bool par = N * F >= kNormParallelWork;
  const index_t nb = num_blocks(N);
  // dx by rows; the column sums of each block of rows into part[b][k][f].
  std::vector<double> part(static_cast<size_t>(nb * 2 * F));
  std::vector<T> ones(gamma ? 0 : size_t(F), T(1));
  const T* g = gamma ? gamma : ones.data();
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < nb; ++b) {
    double* sdy_b = part.data() + b * 2 * F;
    double* sdyx_b = sdy_b + F;
    for (index_t f = 0; f < 2 * F; ++f) sdy_b[f] = 0.0;
    ln_rows_backward(dx, sdy_b, sdyx_b, dy, x, mean, inv_std, g, b * kNormRowBlock,
                     std::min(N, (b + 1) * kNormRowBlock), F);
  }
  std::vector<double> sums(2 * F);
  reduce_blocks(sums.data(), part, nb, 2 * F);
  for (index_t f = 0; f < F; ++f) {
    dbeta[f] = T(sums[f]);
    dgamma[f] = T(sums[F + f]);
  }
}

template <typename T>
void layer_norm_backward_ref(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* inv_std, const T* gamma, index_t N, index_t F) {
  std::vector<double> sdy(F, 0.0), sdyx(F, 0.0);
  for (index_t n = 0; n < N; ++n)
    ln_row_backward(dx + n * F, sdy.data(), sdyx.data(), dy + n * F, x + n * F, mean[n],
                    inv_std[n], gamma, F);
  for (index_t f = 0; f < F; ++f) {
    dbeta[f] = T(sdy[f]);
    dgamma[f] = T(sdyx[f]);
  }
}

// ---------------------------------------------------------------------------------------------
// instantiations

#define NANONET_NORM_INSTANTIATE(T)                                                             \
  template void batch_norm_forward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,         \
                                      const bool*, index_t, index_t, bool, T, T);               \
  template void batch_norm_forward_ref<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,     \
                                          const bool*, index_t, index_t, bool, T, T);           \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,      \
                                       const T*, const bool*, index_t, index_t, bool);          \
  template void batch_norm_backward_ref<T>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                           const T*, const bool*, index_t, index_t, bool);      \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, index_t,        \
                                      index_t, T);                                              \
  template void layer_norm_forward_ref<T>(T*, T*, T*, const T*, const T*, const T*, index_t,    \
                                          index_t, T);                                          \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,      \
                                       const T*, index_t, index_t);                             \
  template void layer_norm_backward_ref<T>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                           const T*, index_t, index_t);

NANONET_NORM_INSTANTIATE(float)
NANONET_NORM_INSTANTIATE(double)
#undef NANONET_NORM_INSTANTIATE

}  // namespace nanonet
