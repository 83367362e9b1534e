#include "nanonet/gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define NN_HAVE_X86 1
#define NN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define NN_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#else
#define NN_HAVE_X86 0
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

namespace {

// ---------------------------------------------------------------------------------------------
// Aligned scratch buffers, reused across calls on each thread.
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

template <typename T>
T* scratch(std::unique_ptr<void, AlignedFree>& holder, size_t& capacity, size_t count) {
  size_t bytes = ((count * sizeof(T) + 63) / 64) * 64;
  if (bytes > capacity) {
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    holder.reset(p);
    capacity = bytes;
  }
  return static_cast<T*>(holder.get());
}

template <typename T>
T* thread_scratch(int slot, size_t count) {
  // slot 0: packed B (shared, owned by the calling thread), 1: packed A, 2: B edge panel
  thread_local std::unique_ptr<void, AlignedFree> holder[3];
  thread_local size_t capacity[3] = {0, 0, 0};
  return scratch<T>(holder[slot], capacity[slot], count);
}

// Write an MR x NR tile held in t (row stride ldt) into C[0:m, 0:n] with beta.
template <typename T>
inline void store_tile(const T* t, index_t ldt, T* c, index_t ldc, T beta, index_t m, index_t n) {
  for (index_t r = 0; r < m; ++r) {
    const T* t_r = t + r * ldt;
    T* c_r = c + r * ldc;
    if (beta == T(0)) {
      for (index_t j = 0; j < n; ++j) c_r[j] = t_r[j];
    } else {
      for (index_t j = 0; j < n; ++j) c_r[j] = t_r[j] + beta * c_r[j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Portable micro-kernel: the same tile shapes as AVX2, written so a compiler may vectorise it.
template <typename T, int MR, int NR>
void ukernel_ref(index_t kc, const T* a, const T* b, index_t ldb, T* c, index_t ldc, T beta,
                 index_t m, index_t n) {
  T acc[MR * NR] = {};
  for (index_t k = 0; k < kc; ++k) {
    const T* a_k = a + k * MR;
    const T* b_k = b + k * ldb;
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r * NR + j] += a_k[r] * b_k[j];
  }
  store_tile(acc, NR, c, ldc, beta, m, n);
}

#if NN_HAVE_X86
// ---------------------------------------------------------------------------------------------
// AVX2 + FMA, R x 16 float / R x 8 double, R <= 6: 2R accumulators (R rows x 2 ymm), 2 B loads,
// 1 broadcast. R = 6 is the main kernel; R < 6 serve the last rows of a block (the packed A panel
// keeps its MR = 6 stride), so a block of 32 rows costs 5 + 2/6 tiles, not 6. The loops over r
// have compile-time bounds and are fully unrolled; the accumulators live in registers.
template <int R>
NN_TARGET_AVX2 void ukernel_avx2_rx16(index_t kc, const float* a, const float* b, index_t ldb,
                                      float* c, index_t ldc, float beta, index_t m, index_t n) {
  static_assert(R >= 1 && R <= 6, "R rows");
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm256_setzero_ps();
    acc1[r] = _mm256_setzero_ps();
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (index_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
    _mm_prefetch(reinterpret_cast<const char*>(b + 8 * ldb), _MM_HINT_T0);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 a_r = _mm256_broadcast_ss(a + r);
      acc0[r] = _mm256_fmadd_ps(a_r, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(a_r, b1, acc1[r]);
    }
    a += 6;
    b += ldb;
  }
  if (m == R && n == 16) {
    const __m256 vbeta = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      float* c_r = c + r * ldc;
      if (beta == 0.0f) {
        _mm256_storeu_ps(c_r, acc0[r]);
        _mm256_storeu_ps(c_r + 8, acc1[r]);
      } else {
        _mm256_storeu_ps(c_r, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c_r), acc0[r]));
        _mm256_storeu_ps(c_r + 8, _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(c_r + 8), acc1[r]));
      }
    }
  } else {
    alignas(32) float t[6 * 16];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm256_store_ps(t + r * 16, acc0[r]);
      _mm256_store_ps(t + r * 16 + 8, acc1[r]);
    }
    store_tile(t, 16, c, ldc, beta, m, n);
  }
}

template <int R>
NN_TARGET_AVX2 void ukernel_avx2_rx8(index_t kc, const double* a, const double* b, index_t ldb,
                                     double* c, index_t ldc, double beta, index_t m, index_t n) {
  static_assert(R >= 1 && R <= 6, "R rows");
  __m256d acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm256_setzero_pd();
    acc1[r] = _mm256_setzero_pd();
  }
  for (index_t k = 0; k < kc; ++k) {
    const __m256d b0 = _mm256_loadu_pd(b);
    const __m256d b1 = _mm256_loadu_pd(b + 4);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256d a_r = _mm256_broadcast_sd(a + r);
      acc0[r] = _mm256_fmadd_pd(a_r, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_pd(a_r, b1, acc1[r]);
    }
    a += 6;
    b += ldb;
  }
  if (m == R && n == 8) {
    const __m256d vbeta = _mm256_set1_pd(beta);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      double* c_r = c + r * ldc;
      if (beta == 0.0) {
        _mm256_storeu_pd(c_r, acc0[r]);
        _mm256_storeu_pd(c_r + 4, acc1[r]);
      } else {
        _mm256_storeu_pd(c_r, _mm256_fmadd_pd(vbeta, _mm256_loadu_pd(c_r), acc0[r]));
        _mm256_storeu_pd(c_r + 4, _mm256_fmadd_pd(vbeta, _mm256_loadu_pd(c_r + 4), acc1[r]));
      }
    }
  } else {
    alignas(32) double t[6 * 8];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm256_store_pd(t + r * 8, acc0[r]);
      _mm256_store_pd(t + r * 8 + 4, acc1[r]);
    }
    store_tile(t, 8, c, ldc, beta, m, n);
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512F, float 12 x 32 and double 12 x 16: 24 accumulators (12 rows x 2 zmm).
#define NN_ROW_AVX512(r, SET1, FMA)          \
  {                                          \
    auto a_r = SET1(a[r]);                   \
    c##r##0 = FMA(a_r, b0, c##r##0);         \
    c##r##1 = FMA(a_r, b1, c##r##1);         \
  }
#define NN_ROWS_AVX512(SET1, FMA)                                                        \
  NN_ROW_AVX512(0, SET1, FMA) NN_ROW_AVX512(1, SET1, FMA) NN_ROW_AVX512(2, SET1, FMA)    \
  NN_ROW_AVX512(3, SET1, FMA) NN_ROW_AVX512(4, SET1, FMA) NN_ROW_AVX512(5, SET1, FMA)    \
  NN_ROW_AVX512(6, SET1, FMA) NN_ROW_AVX512(7, SET1, FMA) NN_ROW_AVX512(8, SET1, FMA)    \
  NN_ROW_AVX512(9, SET1, FMA) NN_ROW_AVX512(10, SET1, FMA) NN_ROW_AVX512(11, SET1, FMA)
#define NN_DECL_AVX512(V, ZERO)                                                           \
  V c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO(), c20 = ZERO(), c21 = ZERO();   \
  V c30 = ZERO(), c31 = ZERO(), c40 = ZERO(), c41 = ZERO(), c50 = ZERO(), c51 = ZERO();   \
  V c60 = ZERO(), c61 = ZERO(), c70 = ZERO(), c71 = ZERO(), c80 = ZERO(), c81 = ZERO();   \
  V c90 = ZERO(), c91 = ZERO(), c100 = ZERO(), c101 = ZERO(), c110 = ZERO(), c111 = ZERO();
#define NN_SPILL_AVX512(STORE, W)                                                         \
  STORE(t + 0 * W, c00); STORE(t + 1 * W, c01); STORE(t + 2 * W, c10);                    \
  STORE(t + 3 * W, c11); STORE(t + 4 * W, c20); STORE(t + 5 * W, c21);                    \
  STORE(t + 6 * W, c30); STORE(t + 7 * W, c31); STORE(t + 8 * W, c40);                    \
  STORE(t + 9 * W, c41); STORE(t + 10 * W, c50); STORE(t + 11 * W, c51);                  \
  STORE(t + 12 * W, c60); STORE(t + 13 * W, c61); STORE(t + 14 * W, c70);                 \
  STORE(t + 15 * W, c71); STORE(t + 16 * W, c80); STORE(t + 17 * W, c81);                 \
  STORE(t + 18 * W, c90); STORE(t + 19 * W, c91); STORE(t + 20 * W, c100);                \
  STORE(t + 21 * W, c101); STORE(t + 22 * W, c110); STORE(t + 23 * W, c111);

// The C tile's rows (first and last element: the two or three lines a row spans) are fetched
// while the k loop runs: C is far larger than L2 for big products and its rows are ldc apart, so
// without this the final load / store of every tile waits on memory (11% of a 2048^3 product).
template <typename T>
inline void nn_prefetch_c_tile(const T* c, index_t ldc, index_t m, index_t last) {
  for (index_t r = 0; r < m; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + last), _MM_HINT_T0);
  }
}

NN_TARGET_AVX512 void ukernel_avx512_12x32(index_t kc, const float* a, const float* b, index_t ldb,
                                           float* c, index_t ldc, float beta, index_t m, index_t n) {
  NN_DECL_AVX512(__m512, _mm512_setzero_ps)
  // The tile of C is fetched about 32 steps (~400 cycles) before the end of the k loop: late
  // enough that the A and B streams do not evict it from L1 again, early enough to hide L3.
  const index_t k_fetch = kc > 32 ? kc - 32 : 0;
  for (index_t k = 0; k < kc; ++k) {
    if (k == k_fetch) nn_prefetch_c_tile(c, ldc, m, 31);
    __m512 b0 = _mm512_loadu_ps(b);
    __m512 b1 = _mm512_loadu_ps(b + 16);
    NN_ROWS_AVX512(_mm512_set1_ps, _mm512_fmadd_ps)
    a += 12;
    b += ldb;
  }
  alignas(64) float t[12 * 32];
  NN_SPILL_AVX512(_mm512_store_ps, 16)
  if (m == 12 && n == 32 && beta == 0.0f) {
    for (int r = 0; r < 12; ++r) {
      _mm512_storeu_ps(c + r * ldc, _mm512_load_ps(t + r * 32));
      _mm512_storeu_ps(c + r * ldc + 16, _mm512_load_ps(t + r * 32 + 16));
    }
  } else if (m == 12 && n == 32) {  // a later KC block accumulates: all 24 loads of C at once
    const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) {
      float* c_r = c + r * ldc;
      _mm512_storeu_ps(c_r, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c_r),
                                            _mm512_load_ps(t + r * 32)));
      _mm512_storeu_ps(c_r + 16, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c_r + 16),
                                                 _mm512_load_ps(t + r * 32 + 16)));
    }
  } else {
    store_tile(t, 32, c, ldc, beta, m, n);
  }
}

// The last R < 12 rows of a block: R x 32, 2R accumulators, reading the same packed A panel
// (stride 12). Each element is the same FMA chain as in the 12-row kernel, so an edge tile gives
// the bits the full kernel gave for those rows; it just does not compute 12 - R discarded rows
// (a 64-row product was 6 full tiles, now 5 and one of 4 rows: the classic MLP's GEMMs).
template <int R>
NN_TARGET_AVX512 void ukernel_avx512_rx32(index_t kc, const float* a, const float* b,
                                          index_t ldb, float* c, index_t ldc, float beta,
                                          index_t m, index_t n) {
  static_assert(R >= 1 && R < 12, "R rows");
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    acc0[r] = _mm512_setzero_ps();
    acc1[r] = _mm512_setzero_ps();
  }
  const index_t k_fetch = kc > 32 ? kc - 32 : 0;
  for (index_t k = 0; k < kc; ++k) {
    if (k == k_fetch) nn_prefetch_c_tile(c, ldc, m, 31);
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 a_r = _mm512_set1_ps(a[r]);
      acc0[r] = _mm512_fmadd_ps(a_r, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(a_r, b1, acc1[r]);
    }
    a += 12;
    b += ldb;
  }
  if (m == R && n == 32) {
    const __m512 vbeta = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      float* c_r = c + r * ldc;
      if (beta == 0.0f) {
        _mm512_storeu_ps(c_r, acc0[r]);
        _mm512_storeu_ps(c_r + 16, acc1[r]);
      } else {
        _mm512_storeu_ps(c_r, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c_r), acc0[r]));
        _mm512_storeu_ps(c_r + 16, _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(c_r + 16), acc1[r]));
      }
    }
  } else {
    alignas(64) float t[12 * 32];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      _mm512_store_ps(t + r * 32, acc0[r]);
      _mm512_store_ps(t + r * 32 + 16, acc1[r]);
    }
    store_tile(t, 32, c, ldc, beta, m, n);
  }
}

NN_TARGET_AVX512 void ukernel_avx512_12x16(index_t kc, const double* a, const double* b,
                                           index_t ldb, double* c, index_t ldc, double beta,
                                           index_t m, index_t n) {
  NN_DECL_AVX512(__m512d, _mm512_setzero_pd)
  // The tile of C is fetched about 32 steps (~400 cycles) before the end of the k loop: late
  // enough that the A and B streams do not evict it from L1 again, early enough to hide L3.
  const index_t k_fetch = kc > 32 ? kc - 32 : 0;
  for (index_t k = 0; k < kc; ++k) {
    if (k == k_fetch) nn_prefetch_c_tile(c, ldc, m, 15);
    __m512d b0 = _mm512_loadu_pd(b);
    __m512d b1 = _mm512_loadu_pd(b + 8);
    NN_ROWS_AVX512(_mm512_set1_pd, _mm512_fmadd_pd)
    a += 12;
    b += ldb;
  }
  alignas(64) double t[12 * 16];
  NN_SPILL_AVX512(_mm512_store_pd, 8)
  if (m == 12 && n == 16 && beta == 0.0) {
    for (int r = 0; r < 12; ++r) {
      _mm512_storeu_pd(c + r * ldc, _mm512_load_pd(t + r * 16));
      _mm512_storeu_pd(c + r * ldc + 8, _mm512_load_pd(t + r * 16 + 8));
    }
  } else {
    store_tile(t, 16, c, ldc, beta, m, n);
  }
}
#endif  // NN_HAVE_X86

// ---------------------------------------------------------------------------------------------
// Packing. alpha is folded into A.

// One full MR-row panel of op(A) starting at a = &op(A)(i0, pc): d[k*MR + r] = alpha * op(A)(r, k).
// k outer, r inner: MR read streams (one per row, or one contiguous run when transposed) and
// contiguous writes; the fixed MR lets the compiler unroll and combine the stores.
template <int MR, typename T>
inline void pack_a_panel_full(bool trans_a, const T* a, index_t lda, index_t kc, T alpha, T* d) {
  if (trans_a) {
    for (index_t k = 0; k < kc; ++k) {
      const T* a_k = a + k * lda;
      for (int r = 0; r < MR; ++r) d[k * MR + r] = alpha * a_k[r];
    }
  } else {
    for (index_t k = 0; k < kc; ++k)
      for (int r = 0; r < MR; ++r) d[k * MR + r] = alpha * a[r * lda + k];
  }
}

// A block (rows ic.., m rows; cols pc.., kc) -> panels of MR rows: ap[p*MR*kc + k*MR + r].
// Panels [p0, p1) only, so threads can split the work.
template <typename T>
void pack_a_mc_kc(bool trans_a, const T* A, index_t lda, index_t ic, index_t pc, index_t m,
                  index_t kc, index_t mr, T alpha, T* ap, index_t p0, index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    T* ap_p = ap + p * mr * kc;
    index_t i0 = ic + p * mr;
    index_t rows = std::min(mr, ic + m - i0);
    if (rows == mr && (mr == 6 || mr == 12)) {  // full panel: fixed-size loops, unrolled
      const T* a = trans_a ? A + pc * lda + i0 : A + i0 * lda + pc;
      if (mr == 6)
        pack_a_panel_full<6>(trans_a, a, lda, kc, alpha, ap_p);
      else
        pack_a_panel_full<12>(trans_a, a, lda, kc, alpha, ap_p);
      continue;
    }
    if (!trans_a) {
      for (index_t r = 0; r < rows; ++r) {
        const T* a_r = A + (i0 + r) * lda + pc;
        for (index_t k = 0; k < kc; ++k) ap_p[k * mr + r] = alpha * a_r[k];
      }
      for (index_t r = rows; r < mr; ++r)
        for (index_t k = 0; k < kc; ++k) ap_p[k * mr + r] = T(0);
    } else {
      for (index_t k = 0; k < kc; ++k) {
        const T* a_k = A + (pc + k) * lda + i0;
        T* d = ap_p + k * mr;
        index_t r = 0;
        for (; r < rows; ++r) d[r] = alpha * a_k[r];
        for (; r < mr; ++r) d[r] = T(0);
      }
    }
  }
}

// One NR-column panel of B: rows pc.. (kc), columns j0.. (cols <= nr, zero-padded to nr)
// -> dst[k*nr + j].
// A full panel of B's rows: a fixed-width copy per row (vectorised moves, no edge handling).
template <int NR, typename T>
inline void copy_panel_rows(const T* b, index_t ldb, index_t kc, T* dst) {
  for (index_t k = 0; k < kc; ++k) {
    const T* b_k = b + k * ldb;
    T* d = dst + k * NR;
    for (int j = 0; j < NR; ++j) d[j] = b_k[j];
  }
}

// A full panel of a transposed B (NR rows of B^T, each contiguous in k): k outer, j inner, so
// the writes are contiguous and the NR row streams are read in step.
template <int NR, typename T>
inline void copy_panel_cols(const T* b, index_t ldb, index_t kc, T* dst) {
  for (index_t k = 0; k < kc; ++k) {
    T* d = dst + k * NR;
    for (int j = 0; j < NR; ++j) d[j] = b[j * ldb + k];
  }
}

template <typename T>
void pack_b_panel(bool trans_b, const T* B, index_t ldb, index_t pc, index_t j0, index_t kc,
                  index_t cols, index_t nr, T* dst) {
  if (!trans_b && cols == nr && (nr == 8 || nr == 16 || nr == 32)) {
    const T* b = B + pc * ldb + j0;
    if (nr == 16)
      copy_panel_rows<16>(b, ldb, kc, dst);
    else if (nr == 8)
      copy_panel_rows<8>(b, ldb, kc, dst);
    else
      copy_panel_rows<32>(b, ldb, kc, dst);
    return;
  }
  if (trans_b && cols == nr && (nr == 8 || nr == 16 || nr == 32)) {
    const T* b = B + j0 * ldb + pc;
    if (nr == 16)
      copy_panel_cols<16>(b, ldb, kc, dst);
    else if (nr == 8)
      copy_panel_cols<8>(b, ldb, kc, dst);
    else
      copy_panel_cols<32>(b, ldb, kc, dst);
    return;
  }
  if (!trans_b) {
    for (index_t k = 0; k < kc; ++k) {
      const T* b_k = B + (pc + k) * ldb + j0;
      T* d = dst + k * nr;
      index_t j = 0;
      for (; j < cols; ++j) d[j] = b_k[j];
      for (; j < nr; ++j) d[j] = T(0);
    }
  } else {
    for (index_t j = 0; j < cols; ++j) {
      const T* b_j = B + (j0 + j) * ldb + pc;
      for (index_t k = 0; k < kc; ++k) dst[k * nr + j] = b_j[k];
    }
    for (index_t j = cols; j < nr; ++j)
      for (index_t k = 0; k < kc; ++k) dst[k * nr + j] = T(0);
  }
}

// B block (rows pc.., kc; cols jc.., n) -> panel q of NR columns: bp[q*NR*kc + k*NR + j].
template <typename T>
void pack_b_kc_nc(bool trans_b, const T* B, index_t ldb, index_t pc, index_t jc, index_t kc,
                  index_t n, index_t nr, T* bp, index_t q) {
  const index_t j0 = jc + q * nr;
  pack_b_panel(trans_b, B, ldb, pc, j0, kc, std::min(nr, jc + n - j0), nr, bp + q * nr * kc);
}

template <typename T>
inline index_t ceil_div(index_t a, index_t b) {
  return (a + b - 1) / b;
}

// K split into equal blocks of at most kc: K = 784 with kc 256 gives 4 x 196, not
// 256 + 256 + 256 + 16 (a thin last block pays the full C load/store for little work).
inline index_t balanced_kc(index_t K, index_t kc) {
  return K <= kc ? K : ceil_div<void>(K, ceil_div<void>(K, kc));
}

// Where the micro-kernel reads B. Packed: panels of the whole KC x NC block, packed once and
// shared by the threads (large M: each panel is reused by many MC blocks). Per panel: when M
// fits one MC block, each panel is packed by the thread that uses it, just before its ir loop,
// into a KC x NR buffer that stays in L1 (same copying work, but no round trip through L2).
template <typename T>
struct BSource {
  const T* packed;  // packed panels (bp[q*NR*kc + k*NR + j]), or nullptr: pack per panel
  const T* B;       // per panel: the original B, its row stride, transpose flag, block origin
  index_t ldb;
  bool trans_b;
  index_t pc, jc;
  T* panel_buf;     // per panel: this thread's KC x NR buffer
};

// Compute the tiles of one packed A block (m rows) against B panels [q0, q1).
template <typename T>
inline void macro_kernel(const UKernel<T>& uk, const T* ap, const BSource<T>& bs, index_t m,
                         index_t n, index_t kc, index_t q0, index_t q1, T* c, index_t ldc, T beta,
                         const GemmEpilogue<T>* epi, index_t row0, index_t col0) {
  const index_t mr = uk.mr, nr = uk.nr;
  for (index_t q = q0; q < q1; ++q) {  // jr loop: NR panels of B
    const index_t nq = std::min(nr, n - q * nr);
    const T* b_q = bs.packed ? bs.packed + q * nr * kc : bs.panel_buf;
    if (!bs.packed)
      pack_b_panel(bs.trans_b, bs.B, bs.ldb, bs.pc, bs.jc + q * nr, kc, nq, nr, bs.panel_buf);
    for (index_t p = 0; p * mr < m; ++p) {  // ir loop: MR panels of A -> micro-kernel
      index_t mp = std::min(mr, m - p * mr);
      UKernelFn<T> fn = (mp < mr && mp < kMaxEdgeRows && uk.rows_fn[mp]) ? uk.rows_fn[mp] : uk.fn;
      fn(kc, ap + p * mr * kc, b_q, nr, c + p * mr * ldc + q * nr, ldc, beta, mp, nq);
    }
  }
  // Epilogue once per block (long rows vectorise; the block was just written, it is in L2).
  if (epi && q0 < q1) {
    const index_t c0 = q0 * nr, c1 = std::min(n, q1 * nr);
    epi->fn(c + c0, ldc, m, c1 - c0, row0, col0 + c0, epi->ctx);
  }
}

template <typename T>
void scale_c(T* C, index_t ldc, index_t M, index_t N, T beta) {
  for (index_t i = 0; i < M; ++i) {
    T* c_i = C + i * ldc;
    if (beta == T(0))
      std::fill(c_i, c_i + N, T(0));
    else
      for (index_t j = 0; j < N; ++j) c_i[j] *= beta;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
template <>
const UKernel<float>& gemm_ukernel_for<float>(Isa isa) {
  static const UKernel<float> ref{ukernel_ref<float, 6, 16>, kBlockRefF32.mr, kBlockRefF32.nr,
                                  kBlockRefF32.mc, kBlockRefF32.kc, kBlockRefF32.nc,
                                  "ukernel_ref_6x16"};
#if NN_HAVE_X86
  static const UKernel<float> avx2{ukernel_avx2_rx16<6>, kBlockAvx2F32.mr, kBlockAvx2F32.nr,
                                   kBlockAvx2F32.mc, kBlockAvx2F32.kc, kBlockAvx2F32.nc,
                                   "ukernel_avx2_6x16",
                                   {nullptr, ukernel_avx2_rx16<1>, ukernel_avx2_rx16<2>,
                                    ukernel_avx2_rx16<3>, ukernel_avx2_rx16<4>,
                                    ukernel_avx2_rx16<5>}};
  static const UKernel<float> avx512{
      ukernel_avx512_12x32, kBlockAvx512F32.mr, kBlockAvx512F32.nr, kBlockAvx512F32.mc,
      kBlockAvx512F32.kc, kBlockAvx512F32.nc, "ukernel_avx512_12x32",
      {nullptr, ukernel_avx512_rx32<1>, ukernel_avx512_rx32<2>, ukernel_avx512_rx32<3>,
       ukernel_avx512_rx32<4>, ukernel_avx512_rx32<5>, ukernel_avx512_rx32<6>,
       ukernel_avx512_rx32<7>, ukernel_avx512_rx32<8>, ukernel_avx512_rx32<9>,
       ukernel_avx512_rx32<10>, ukernel_avx512_rx32<11>}};
  if (isa == Isa::avx512) return avx512;
  if (isa == Isa::avx2) return avx2;
#endif
  return ref;
}

template <>
const UKernel<double>& gemm_ukernel_for<double>(Isa isa) {
  static const UKernel<double> ref{ukernel_ref<double, 6, 8>, kBlockRefF64.mr, kBlockRefF64.nr,
                                   kBlockRefF64.mc, kBlockRefF64.kc, kBlockRefF64.nc,
                                   "ukernel_ref_6x8"};
#if NN_HAVE_X86
  static const UKernel<double> avx2{ukernel_avx2_rx8<6>, kBlockAvx2F64.mr, kBlockAvx2F64.nr,
                                    kBlockAvx2F64.mc, kBlockAvx2F64.kc, kBlockAvx2F64.nc,
                                    "ukernel_avx2_6x8",
                                    {nullptr, ukernel_avx2_rx8<1>, ukernel_avx2_rx8<2>,
                                     ukernel_avx2_rx8<3>, ukernel_avx2_rx8<4>,
                                     ukernel_avx2_rx8<5>}};
  static const UKernel<double> avx512{ukernel_avx512_12x16, kBlockAvx512F64.mr,
                                      kBlockAvx512F64.nr, kBlockAvx512F64.mc, kBlockAvx512F64.kc,
                                      kBlockAvx512F64.nc, "ukernel_avx512_12x16"};
  if (isa == Isa::avx512) return avx512;
  if (isa == Isa::avx2) return avx2;
#endif
  return ref;
}

template <typename T>
const UKernel<T>& gemm_ukernel() {
  return gemm_ukernel_for<T>(family_isa(Family::gemm));
}

namespace {

template <typename T>
void gemm_threads(int nthreads, bool trans_a, bool trans_b, index_t M, index_t N, index_t K,
                  T alpha, const T* A, index_t lda, const T* B, index_t ldb, T beta, T* C,
                  index_t ldc, const GemmEpilogue<T>* epi) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) {
    scale_c(C, ldc, M, N, beta);
    if (epi) epi->fn(C, ldc, M, N, 0, 0, epi->ctx);
    return;
  }
  const UKernel<T>& uk = gemm_ukernel<T>();
  const index_t mr = uk.mr, nr = uk.nr, KC = balanced_kc(K, uk.kc), NC = uk.nc;

  if (2.0 * double(M) * double(N) * double(K) < kGemmParallelFlops) nthreads = 1;

  // Row blocks: split M into n_ic blocks of mc rows (multiple of mr), balanced across threads.
  index_t n_ic = ceil_div<T>(M, uk.mc);
  bool split_ic = nthreads > 1 && n_ic >= nthreads;
  if (split_ic) n_ic = ceil_div<T>(n_ic, nthreads) * nthreads;
  index_t mc = ceil_div<T>(ceil_div<T>(M, n_ic), mr) * mr;
  n_ic = ceil_div<T>(M, mc);

  const index_t nc_max = std::min(NC, ceil_div<T>(N, nr) * nr);
  const index_t kc_max = std::min(KC, K);
  const bool per_panel = n_ic == 1;  // M fits one MC block: pack B panel by panel
  T* bp = per_panel ? nullptr : thread_scratch<T>(0, size_t(nc_max) * size_t(kc_max));
  // Shared packed A for the jr-split mode lives in the caller's second slot.
  T* ap_shared = split_ic ? nullptr : thread_scratch<T>(1, size_t(mc) * size_t(kc_max));

#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    T* ap_own = split_ic ? thread_scratch<T>(1, size_t(mc) * size_t(kc_max)) : nullptr;
    T* panel_buf = per_panel ? thread_scratch<T>(2, size_t(nr) * size_t(kc_max)) : nullptr;
    for (index_t jc = 0; jc < N; jc += NC) {  // jc loop: NC columns of C
      const index_t nc = std::min(NC, N - jc);
      const index_t n_q = ceil_div<T>(nc, nr);
      for (index_t pc = 0; pc < K; pc += KC) {  // pc loop: KC of the inner dimension, pack B
        const index_t kc = std::min(KC, K - pc);
        const T beta_pc = pc == 0 ? beta : T(1);
        const GemmEpilogue<T>* epi_pc = (pc + kc == K) ? epi : nullptr;
        const BSource<T> bs{bp, B, ldb, trans_b, pc, jc, panel_buf};
        if (!per_panel) {
#pragma omp for schedule(static)
          for (index_t q = 0; q < n_q; ++q)
            pack_b_kc_nc(trans_b, B, ldb, pc, jc, kc, nc, nr, bp, q);
          // (implicit barrier: B is packed)
        }
        if (split_ic) {
#pragma omp for schedule(static)
          for (index_t ib = 0; ib < n_ic; ++ib) {  // ic loop: MC rows, pack A per thread
            const index_t ic = ib * mc;
            const index_t m = std::min(mc, M - ic);
            pack_a_mc_kc(trans_a, A, lda, ic, pc, m, kc, mr, alpha, ap_own, index_t(0),
                         ceil_div<T>(m, mr));
            macro_kernel(uk, ap_own, bs, m, nc, kc, 0, n_q, C + ic * ldc + jc, ldc, beta_pc,
                         epi_pc, ic, jc);
          }
        } else {
          for (index_t ib = 0; ib < n_ic; ++ib) {  // ic loop: MC rows, A shared by threads
            const index_t ic = ib * mc;
            const index_t m = std::min(mc, M - ic);
            const index_t n_p = ceil_div<T>(m, mr);
#pragma omp for schedule(static)
            for (index_t p = 0; p < n_p; ++p)
              pack_a_mc_kc(trans_a, A, lda, ic, pc, m, kc, mr, alpha, ap_shared, p, p + 1);
#pragma omp for schedule(static)
            for (int t = 0; t < nthreads; ++t) {  // jr loop split in contiguous ranges
              const index_t q0 = n_q * t / nthreads, q1 = n_q * (t + 1) / nthreads;
              macro_kernel(uk, ap_shared, bs, m, nc, kc, q0, q1, C + ic * ldc + jc, ldc,
                           beta_pc, epi_pc, ic, jc);
            }
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
          index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc,
          const GemmEpilogue<T>* epi) {
  gemm_threads(get_num_threads(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
               epi);
}

template <typename T>
void gemm_serial(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha,
                 const T* A, index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc,
                 const GemmEpilogue<T>* epi) {
  gemm_threads(1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
}

template <typename T>
PackedB<T> pack_b(bool trans_b, index_t K, index_t N, const T* B, index_t ldb) {
  PackedB<T> out;
  out.uk = &gemm_ukernel<T>();
  out.K = K;
  out.N = N;
  const index_t nr = out.uk->nr, KC = balanced_kc(K, out.uk->kc);
  const index_t np = out.panels() * nr;
  size_t bytes = ((size_t(np) * size_t(std::max<index_t>(K, 1)) * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  out.data.reset(static_cast<T*>(p));
  for (index_t pc = 0; pc < K; pc += KC) {
    const index_t kc = std::min(KC, K - pc);
    T* bp = out.data.get() + pc * np;
    for (index_t q = 0; q < out.panels(); ++q) pack_b_kc_nc(trans_b, B, ldb, pc, 0, kc, N, nr, bp, q);
  }
  return out;
}

template <typename T>
void gemm_packed_serial(bool trans_a, index_t M, T alpha, const T* A, index_t lda,
                        const PackedB<T>& Bp, index_t q0, index_t q1, T beta, T* C, index_t ldc) {
  const index_t K = Bp.K, N = Bp.N;
  q1 = std::min(q1, Bp.panels());
  if (M <= 0 || q0 >= q1) return;
  const UKernel<T>& uk = *Bp.uk;
  const index_t mr = uk.mr, nr = uk.nr, KC = balanced_kc(K, uk.kc), MC = uk.mc;
  if (K <= 0 || alpha == T(0)) {
    index_t c0 = q0 * nr, c1 = std::min(q1 * nr, N);
    scale_c(C + c0, ldc, M, c1 - c0, beta);
    return;
  }
  const index_t np = Bp.panels() * nr;
  T* ap = thread_scratch<T>(1, size_t(std::min(MC, ceil_div<T>(M, mr) * mr)) * size_t(std::min(KC, K)));
  for (index_t pc = 0; pc < K; pc += KC) {  // pc loop over the pre-packed KC blocks
    const index_t kc = std::min(KC, K - pc);
    const T beta_pc = pc == 0 ? beta : T(1);
    const BSource<T> bs{Bp.data.get() + pc * np, nullptr, 0, false, 0, 0, nullptr};
    for (index_t ic = 0; ic < M; ic += MC) {  // ic loop: pack A
      const index_t m = std::min(MC, M - ic);
      pack_a_mc_kc(trans_a, A, lda, ic, pc, m, kc, mr, alpha, ap, index_t(0), ceil_div<T>(m, mr));
      macro_kernel(uk, ap, bs, m, N, kc, q0, q1, C + ic * ldc, ldc, beta_pc,
                   static_cast<const GemmEpilogue<T>*>(nullptr), ic, 0);
    }
  }
}

template <typename T>
void gemm_ref(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
              index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  for (index_t i = 0; i < M; ++i) {
    for (index_t j = 0; j < N; ++j) {
      T acc = T(0);
      for (index_t k = 0; k < K; ++k) {
        T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      T* c = C + i * ldc + j;
      *c = beta == T(0) ? alpha * acc : alpha * acc + beta * *c;
    }
  }
}

template const UKernel<float>& gemm_ukernel<float>();
template const UKernel<double>& gemm_ukernel<double>();
template void gemm<float>(bool, bool, index_t, index_t, index_t, float, const float*, index_t,
                          const float*, index_t, float, float*, index_t,
                          const GemmEpilogue<float>*);
template void gemm<double>(bool, bool, index_t, index_t, index_t, double, const double*, index_t,
                           const double*, index_t, double, double*, index_t,
                           const GemmEpilogue<double>*);
template void gemm_serial<float>(bool, bool, index_t, index_t, index_t, float, const float*,
                                 index_t, const float*, index_t, float, float*, index_t,
                                 const GemmEpilogue<float>*);
template void gemm_serial<double>(bool, bool, index_t, index_t, index_t, double, const double*,
                                  index_t, const double*, index_t, double, double*, index_t,
                                  const GemmEpilogue<double>*);
template PackedB<float> pack_b<float>(bool, index_t, index_t, const float*, index_t);
template PackedB<double> pack_b<double>(bool, index_t, index_t, const double*, index_t);
template void gemm_packed_serial<float>(bool, index_t, float, const float*, index_t,
                                        const PackedB<float>&, index_t, index_t, float, float*,
                                        index_t);
template void gemm_packed_serial<double>(bool, index_t, double, const double*, index_t,
                                         const PackedB<double>&, index_t, index_t, double, double*,
                                         index_t);
template void gemm_ref<float>(bool, bool, index_t, index_t, index_t, float, const float*, index_t,
                              const float*, index_t, float, float*, index_t);
template void gemm_ref<double>(bool, bool, index_t, index_t, index_t, double, const double*,
                               index_t, const double*, index_t, double, double*, index_t);

}  // namespace nanonet
