#include "nanonet/per_example.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "nanonet/gemm.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

namespace {

int team_size(double flops, index_t B) {
  if (flops < kGemmParallelFlops || B < 2) return 1;
  return int(std::min<index_t>(get_num_threads(), B));
}

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// x . y in double from partial sums of 512 products in T: the loop vectorises at -O2 (an
// OpenMP simd reduction), a few T-ulp per block.
template <typename T>
double dot_rows(const T* x, const T* y, index_t n) {
  double s = 0.0;
  for (index_t k0 = 0; k0 < n; k0 += 512) {
    const index_t k1 = std::min<index_t>(n, k0 + 512);
    T acc = T(0);
#ifdef _OPENMP
#pragma omp simd reduction(+ : acc)
#endif
    for (index_t k = k0; k < k1; ++k) acc += x[k] * y[k];
    s += double(acc);
  }
  return s;
}

}  // namespace

template <typename T>
void per_example_matmul_sq_norms(T* out, const T* a, const T* d, const PerExampleDims& dims,
                                 bool bias) {
  const index_t B = dims.B, TT = dims.T, K = dims.K, N = dims.N;
  if (TT == 1) {  // a 2-D Dense layer: (||a_b||^2 + bias) ||d_b||^2
    for (index_t b = 0; b < B; ++b) {
      const T* a_b = a + b * dims.a_ex;
      const T* d_b = d + b * dims.d_ex;
      out[b] = T((dot_rows(a_b, a_b, K) + (bias ? 1.0 : 0.0)) * dot_rows(d_b, d_b, N));
    }
    return;
  }
  const double gram_flops = 2.0 * double(TT) * double(TT) * double(K + N);
  const double direct_flops = 2.0 * double(TT) * double(K) * double(N);
  // The T x T products (short rows, padded to the micro-kernel's tiles) run at about half the
  // rate of the K x N one: measured on AVX-512 at T = 100, K = 256, N = 512, 1 thread, the two
  // Grams of 32 examples took 5.0 ms (98 GFLOP/s) and the direct products 4.3 ms (195).
  const bool gram = 2.0 * gram_flops < direct_flops;
  const index_t ws = gram ? 2 * TT * TT : K * N + (bias ? N : 0);
  const int nt = team_size(double(B) * std::min(gram_flops, direct_flops), B);
  std::vector<T> work(size_t(nt) * size_t(std::max<index_t>(ws, 1)));

#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    T* w = work.data() + size_t(thread_id()) * size_t(std::max<index_t>(ws, 1));
    const T* a_b = a + b * dims.a_ex;
    const T* d_b = d + b * dims.d_ex;
    double s = 0.0, sb = 0.0;
    if (gram) {
      // (A_b A_b^T) and (D_b D_b^T), T x T each; out = their elementwise product summed; the
      // bias's ||sum_t D_b[t]||^2 is the sum of every entry of D_b D_b^T.
      T* ga = w;
      T* gd = w + TT * TT;
      gemm_serial<T>(false, true, TT, TT, K, T(1), a_b, dims.a_row, a_b, dims.a_row, T(0), ga, TT);
      gemm_serial<T>(false, true, TT, TT, N, T(1), d_b, dims.d_row, d_b, dims.d_row, T(0), gd, TT);
      s = dot_rows(ga, gd, TT * TT);
      if (bias) {
        T acc = T(0);
#ifdef _OPENMP
#pragma omp simd reduction(+ : acc)
#endif
        for (index_t k = 0; k < TT * TT; ++k) acc += gd[k];
        sb = double(acc);
      }
    } else {
      // g_b = A_b^T D_b (K x N), then its squared norm; the bias's gradient is D_b's column sums.
      gemm_serial<T>(true, false, K, N, TT, T(1), a_b, dims.a_row, d_b, dims.d_row, T(0), w, N);
      s = dot_rows(w, w, K * N);
      if (bias) {
        T* col = w + K * N;
        std::fill(col, col + N, T(0));
        for (index_t t = 0; t < TT; ++t) {
          const T* d_t = d_b + t * dims.d_row;
#ifdef _OPENMP
#pragma omp simd
#endif
          for (index_t n = 0; n < N; ++n) col[n] += d_t[n];
        }
        sb = dot_rows(col, col, N);
      }
    }
    out[b] = T(std::max(s, 0.0) + std::max(sb, 0.0));
  }
}

template <typename T>
void per_example_matmul_sq_norms_ref(T* out, const T* a, const T* d, const PerExampleDims& dims,
                                     bool bias) {
  for (index_t b = 0; b < dims.B; ++b) {
    double s = 0.0;
    for (index_t n = 0; n < dims.N; ++n) {
      for (index_t k = 0; k < dims.K; ++k) {
        double g = 0.0;  // the per-example gradient element (A_b^T D_b)[k, n]
        for (index_t t = 0; t < dims.T; ++t)
          g += double(a[b * dims.a_ex + t * dims.a_row + k]) *
               double(d[b * dims.d_ex + t * dims.d_row + n]);
        s += g * g;
      }
      if (bias) {
        double g = 0.0;  // the bias's gradient element sum_t D_b[t, n]
        for (index_t t = 0; t < dims.T; ++t) g += double(d[b * dims.d_ex + t * dims.d_row + n]);
        s += g * g;
      }
    }
    out[b] = T(s);
  }
}

template <typename T, typename I>
void embedding_per_example_sq_norms(T* out, const I* ids, const T* dy, index_t B, index_t T_,
                                    index_t E) {
  const int nt = team_size(double(B) * double(T_) * double(E + 8), B);
  std::vector<index_t> order(size_t(nt) * size_t(std::max<index_t>(T_, 1)));
  std::vector<double> acc(size_t(nt) * size_t(std::max<index_t>(E, 1)));

#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    const int tid = thread_id();
    index_t* ord = order.data() + size_t(tid) * size_t(std::max<index_t>(T_, 1));
    double* sum = acc.data() + size_t(tid) * size_t(std::max<index_t>(E, 1));
    const I* ids_b = ids + b * T_;
    const T* dy_b = dy + b * T_ * E;
    for (index_t t = 0; t < T_; ++t) ord[t] = t;
    // Stable, so the summation order within a run (and the result) is fixed.
    std::stable_sort(ord, ord + T_, [ids_b](index_t x, index_t y) { return ids_b[x] < ids_b[y]; });
    double s = 0.0;
    for (index_t r = 0; r < T_;) {
      // One run of equal ids: the row of the per-example gradient is the sum of its dy rows.
      index_t r1 = r + 1;
      while (r1 < T_ && ids_b[ord[r1]] == ids_b[ord[r]]) ++r1;
      std::fill(sum, sum + E, 0.0);
      for (index_t q = r; q < r1; ++q) {
        const T* dy_t = dy_b + ord[q] * E;
        for (index_t e = 0; e < E; ++e) sum[e] += double(dy_t[e]);
      }
      for (index_t e = 0; e < E; ++e) s += sum[e] * sum[e];
      r = r1;
    }
    out[b] = T(s);
  }
}

template <typename T, typename I>
void embedding_per_example_sq_norms_ref(T* out, const I* ids, const T* dy, index_t B, index_t T_,
                                        index_t E) {
  // ||sum_t onehot(ids[b, t]) dy[b, t]||^2 = sum over pairs (t, u) with equal ids of dy_t . dy_u
  for (index_t b = 0; b < B; ++b) {
    double s = 0.0;
    for (index_t t = 0; t < T_; ++t)
      for (index_t u = 0; u < T_; ++u)
        if (ids[b * T_ + t] == ids[b * T_ + u])
          s += dot_rows(dy + (b * T_ + t) * E, dy + (b * T_ + u) * E, E);
    out[b] = T(s);
  }
}

#define NN_PER_EXAMPLE_INSTANTIATE(T)                                                          \
  template void per_example_matmul_sq_norms<T>(T*, const T*, const T*, const PerExampleDims&,   \
                                               bool);                                          \
  template void per_example_matmul_sq_norms_ref<T>(T*, const T*, const T*,                     \
                                                   const PerExampleDims&, bool);               \
  template void embedding_per_example_sq_norms<T, int32_t>(T*, const int32_t*, const T*,       \
                                                           index_t, index_t, index_t);         \
  template void embedding_per_example_sq_norms<T, int64_t>(T*, const int64_t*, const T*,       \
                                                           index_t, index_t, index_t);         \
  template void embedding_per_example_sq_norms_ref<T, int32_t>(T*, const int32_t*, const T*,   \
                                                               index_t, index_t, index_t);     \
  template void embedding_per_example_sq_norms_ref<T, int64_t>(T*, const int64_t*, const T*,   \
                                                               index_t, index_t, index_t);

NN_PER_EXAMPLE_INSTANTIATE(float)
NN_PER_EXAMPLE_INSTANTIATE(double)

}  // namespace nanonet
