// Helpers shared by the recurrent kernels (lstm.cpp, gru.cpp): per-call scratch, activations
// over spans, the input gather / gradient scatter between batch-major (B, T, I) and time-major
// processing order, and the serial-or-threaded GEMM call. Kernel-internal; never included by
// bindings.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "nanonet/gemm.hpp"
#include "nanonet/lstm.hpp"
#include "nanonet/vecmath.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NN_RNN_INLINE inline __attribute__((always_inline))
#else
#define NN_RNN_INLINE inline
#endif

namespace nanonet {
namespace rnn_detail {

// ---------------------------------------------------------------------------------------------
// Uninitialised, 64-byte aligned scratch for one call.
template <typename T>
struct Scratch {
  std::unique_ptr<T[], AlignedDelete> p;
  explicit Scratch(size_t n) {
    size_t bytes = ((std::max<size_t>(n, 1) * sizeof(T) + 63) / 64) * 64;
    void* q = std::aligned_alloc(64, bytes);
    if (!q) throw std::bad_alloc();
    p.reset(static_cast<T*>(q));
  }
  T* get() const { return p.get(); }
};

// ---------------------------------------------------------------------------------------------
// Activations over a span, in place; and v *= f'(y) from the output y. One switch per span, a
// simple loop per case so each vectorises (vecmath: vm::sigmoid / vm::tanh are branch-free).
template <typename T>
NN_RNN_INLINE void act_span(LstmAct a, T* v, index_t n) {
  switch (a) {
    case LstmAct::tanh:
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) v[r] = vm::tanh(v[r]);
      break;
    case LstmAct::sigmoid:
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) v[r] = vm::sigmoid(v[r]);
      break;
    case LstmAct::relu:
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) v[r] = vm::select(v[r] < T(0), T(0), v[r]);
      break;
    case LstmAct::linear:
      break;
  }
}

template <typename T>
NN_RNN_INLINE void act_grad_span(LstmAct a, T* v, const T* y, index_t n) {
  switch (a) {
    case LstmAct::tanh:
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) v[r] *= T(1) - y[r] * y[r];
      break;
    case LstmAct::sigmoid:
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) v[r] *= y[r] * (T(1) - y[r]);
      break;
    case LstmAct::relu:
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) v[r] = vm::select(y[r] > T(0), v[r], T(0));
      break;
    case LstmAct::linear:
      break;
  }
}

template <typename T>
inline void call_gemm(bool serial, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
               const T* A, index_t lda, const T* B, index_t ldb, T* C, index_t ldc) {
  if (serial)
    gemm_serial<T>(trans_a, trans_b, M, N, K, T(1), A, lda, B, ldb, T(0), C, ldc);
  else
    gemm<T>(trans_a, trans_b, M, N, K, T(1), A, lda, B, ldb, T(0), C, ldc);
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

template <typename T>
void gather_inputs(T* xd, index_t ldxd, const T* x, const T* idm, index_t B, index_t TT,
                   index_t I, bool go_backwards) {
  const int nt = double(B) * double(TT) * double(I) >= 65536.0 ? get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t k = 0; k < TT; ++k) {
    const index_t t = go_backwards ? TT - 1 - k : k;
    for (index_t b = 0; b < B; ++b) {
      const T* src = x + (b * TT + t) * I;
      T* dst = xd + (k * B + b) * ldxd;
      if (idm) {
        const T* m = idm + b * I;
        for (index_t i = 0; i < I; ++i) dst[i] = src[i] * m[i];
      } else {
        std::memcpy(dst, src, size_t(I) * sizeof(T));
      }
    }
  }
}

// dx[b, t(k), :] = dxt[k, b, :] * input_dropout_mask[b, :]
template <typename T>
void scatter_input_grads(T* dx, const T* dxt, const T* idm, index_t B, index_t TT, index_t I,
                         bool go_backwards) {
  const int nt = double(B) * double(TT) * double(I) >= 65536.0 ? get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t b = 0; b < B; ++b) {
    for (index_t k = 0; k < TT; ++k) {
      const index_t t = go_backwards ? TT - 1 - k : k;
      const T* src = dxt + (k * B + b) * I;
      T* dst = dx + (b * TT + t) * I;
      if (idm) {
        const T* m = idm + b * I;
        for (index_t i = 0; i < I; ++i) dst[i] = src[i] * m[i];
      } else {
        std::memcpy(dst, src, size_t(I) * sizeof(T));
      }
    }
  }
}

template <typename T>
void copy_or_zero(T* dst, const T* src, index_t n) {
  if (src)
    std::memcpy(dst, src, size_t(n) * sizeof(T));
  else
    std::fill(dst, dst + n, T(0));
}

}  // namespace rnn_detail
}  // namespace nanonet
