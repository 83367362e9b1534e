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
      vm::tanh_span(v, v, n);
      break;
    case LstmAct::sigmoid:
      vm::sigmoid_span(v, v, n);
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

// ---------------------------------------------------------------------------------------------
// Fused recurrent products (defined in lstm.cpp; the "lstm" kernel family of runtime.hpp):
// C = A @ B for one thread's rows of one time step, B (K x N) a recurrent kernel, its
// transpose or a column block of it, packed once per call. A register-blocked small GEMM that
// reads A in place (no packing per step) and keeps its tile of C in registers over the whole
// k loop: every recurrent product of LSTM, GRU and SimpleRNN, forward (h_k @ recurrent_kernel)
// and backward (dz_k @ recurrent_kernel^T). Each element of C is one FMA chain over k from zero,
// so results depend neither on the row tiling, the thread grid nor on AVX2 vs AVX-512.
//
// fused_isa(B): the path for a call with B rows: avx512 or avx2 where the CPU and the lstm
// family's cap allow it and B > kLstmGemvMaxBatch, else ref (= not used; the caller keeps its
// GEMM-driver path). Decided by B and the CPU alone, never by the thread count.
Isa fused_isa(index_t B);
index_t fused_width(Isa isa, size_t elem);  // vector width W in elements (0 for ref)

template <typename T>
struct FusedB {
  Scratch<T> p{1};
  index_t K = 0, N = 0, W = 0;  // W = 0: empty (not packed)
  Isa isa = Isa::ref;
};

// B[k, n] = src[k * ldk + n * ldn], k < K, n < N, packed for the path isa (ref: empty).
template <typename T>
FusedB<T> pack_fused(Isa isa, const T* src, index_t ldk, index_t ldn, index_t K, index_t N);

// C[r, c - c0] = sum_k A[r * lda + k] B[k, c] for r < rows, c0 <= c < c1 (c0 a multiple of
// b.W, c1 <= b.N): overwritten (C points at row 0, column c0; row stride ldc).
template <typename T>
void fused_product(const FusedB<T>& b, const T* A, index_t lda, index_t rows, index_t c0,
                   index_t c1, T* C, index_t ldc);

template <typename T>
void copy_or_zero(T* dst, const T* src, index_t n) {
  if (src)
    std::memcpy(dst, src, size_t(n) * sizeof(T));
  else
    std::fill(dst, dst + n, T(0));
}

}  // namespace rnn_detail
}  // namespace nanonet
