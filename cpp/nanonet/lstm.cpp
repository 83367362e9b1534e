#include "nanonet/lstm.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "nanonet/gemm.hpp"
#include "nanonet/recurrent_common.hpp"
#include "nanonet/vecmath.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define NN_LSTM_X86 1
#define NN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define NN_LSTM_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NN_LSTM_INLINE inline __attribute__((always_inline))
#else
#define NN_LSTM_INLINE inline
#endif

namespace nanonet {

LstmAct lstm_act_from_name(const std::string& name, const char* fn, const char* arg) {
  if (name == "tanh") return LstmAct::tanh;
  if (name == "sigmoid") return LstmAct::sigmoid;
  if (name == "relu") return LstmAct::relu;
  if (name == "linear") return LstmAct::linear;
  throw std::invalid_argument(std::string(fn) + ": " + arg +
                              " must be one of tanh, sigmoid, relu, linear; got '" + name + "'");
}

namespace {

using namespace rnn_detail;

// ---------------------------------------------------------------------------------------------
// One forward step of the fused gate pass over a tile: rows [b0, b1) x units [j0, j1).
template <typename T>
struct FwdStep {
  index_t H, G;
  LstmAct a, ra;
  T* gates;              // gates_k (B, G): in x_k @ kernel, out i, f, g, o activated (if keep)
  bool keep;             // write the activated gates back (training); else into tmp
  const T* zr;           // (B, G) h_k @ recurrent_kernel, the tile's 4 gates at [4 j0, 4 j1)
  const T* bias;         // (G) or nullptr
  const T* c_prev;       // c_k (B, H)
  T* c_out;              // c_{k+1}
  T* ac_out;             // a(c_{k+1}) or nullptr (then tmp)
  const T* h_prev;       // h_k (row stride hp_ld)
  T* h_out;              // h_{k+1} (row stride ho_ld)
  T* hd_out;             // h_{k+1} * rdm (row stride hd_ld), or nullptr
  index_t hp_ld, ho_ld, hd_ld;
  const T* rdm;          // (B, H) recurrent dropout mask, with hd_out
  T* y;                  // y + k H (row stride y_ld) or nullptr
  index_t y_ld;
  const std::uint8_t* mask;  // mask + t(k) (row stride mask_ld) or nullptr
  index_t mask_ld;
};

template <typename T>
NN_LSTM_INLINE void fwd_tile_body(const FwdStep<T>& s, index_t b0, index_t b1, index_t j0,
                                  index_t j1, T* tmp) {
  // tmp: n for a(c), then 4 n for the gates when they are not kept
  const index_t n = j1 - j0, H = s.H, G = s.G;
  for (index_t b = b0; b < b1; ++b) {
    T* g_b = s.gates + b * G;
    const T* zr_b = s.zr + b * G + 4 * j0;
    T* z[4];
    for (int q = 0; q < 4; ++q) {
      const T* x_q = g_b + q * H + j0;
      T* z_q = s.keep ? g_b + q * H + j0 : tmp + (q + 1) * n;
      const T* r_q = zr_b + q * n;
      if (s.bias) {
        const T* bias_q = s.bias + q * H + j0;
        NN_PRAGMA_SIMD
        for (index_t r = 0; r < n; ++r) z_q[r] = x_q[r] + (r_q[r] + bias_q[r]);
      } else {
        NN_PRAGMA_SIMD
        for (index_t r = 0; r < n; ++r) z_q[r] = x_q[r] + r_q[r];
      }
      z[q] = z_q;
    }
    T* i_b = z[0];
    T* f_b = z[1];
    T* gg_b = z[2];
    T* o_b = z[3];
    act_span(s.ra, i_b, n);
    act_span(s.ra, f_b, n);
    act_span(s.a, gg_b, n);
    act_span(s.ra, o_b, n);
    const T* cp = s.c_prev + b * H + j0;
    const T* hp = s.h_prev + b * s.hp_ld + j0;
    T* co = s.c_out + b * H + j0;
    T* ho = s.h_out + b * s.ho_ld + j0;
    T* ac = s.ac_out ? s.ac_out + b * H + j0 : tmp;
    const bool valid = !s.mask || s.mask[b * s.mask_ld] != 0;
    if (valid) {
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) co[r] = f_b[r] * cp[r] + i_b[r] * gg_b[r];
    } else {
      std::memcpy(co, cp, size_t(n) * sizeof(T));
    }
    std::memcpy(ac, co, size_t(n) * sizeof(T));
    act_span(s.a, ac, n);
    if (valid) {
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) ho[r] = o_b[r] * ac[r];
    } else {
      std::memcpy(ho, hp, size_t(n) * sizeof(T));
    }
    if (s.y) std::memcpy(s.y + b * s.y_ld + j0, ho, size_t(n) * sizeof(T));
    if (s.hd_out) {
      const T* m = s.rdm + b * H + j0;
      T* hd = s.hd_out + b * s.hd_ld + j0;
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) hd[r] = ho[r] * m[r];
    }
  }
}

// One backward step of the fused gate pass over a tile.
template <typename T>
struct BwdStep {
  index_t H, G;
  LstmAct a, ra;
  const T* gates;        // gates_k (B, G)
  const T* c_prev;       // c_k (B, H)
  const T* ac;           // a(c_{k+1}) (B, H)
  const T* dy;           // dy + k H (row stride dy_ld) or nullptr
  index_t dy_ld;
  const T* dhn;          // (B, H) gradient reaching h_{k+1} from step k+1 (and dh_n)
  T* dc;                 // (B, H) in: gradient reaching c_{k+1}; out: reaching c_k
  T* dz;                 // dz_k (B, G), out
  T* dh_keep;            // (B, H): dh of masked rows, 0 for valid rows (only with mask)
  const std::uint8_t* mask;
  index_t mask_ld;
  T* dbias;              // (G) per-thread partial sum, accumulated, or nullptr
};

template <typename T>
NN_LSTM_INLINE void bwd_tile_body(const BwdStep<T>& s, index_t b0, index_t b1, index_t j0,
                                  index_t j1, T* tmp) {
  const index_t n = j1 - j0, H = s.H, G = s.G;
  T* dh = tmp;
  T* t1 = tmp + n;
  for (index_t b = b0; b < b1; ++b) {
    const T* dhn_b = s.dhn + b * H + j0;
    if (s.dy) {
      const T* dy_b = s.dy + b * s.dy_ld + j0;
      NN_PRAGMA_SIMD
      for (index_t r = 0; r < n; ++r) dh[r] = dhn_b[r] + dy_b[r];
    } else {
      std::memcpy(dh, dhn_b, size_t(n) * sizeof(T));
    }
    T* dz_b = s.dz + b * G;
    T* dzi = dz_b + j0;
    T* dzf = dz_b + H + j0;
    T* dzg = dz_b + 2 * H + j0;
    T* dzo = dz_b + 3 * H + j0;
    const bool valid = !s.mask || s.mask[b * s.mask_ld] != 0;
    if (!valid) {
      for (int q = 0; q < 4; ++q) std::fill(dz_b + q * H + j0, dz_b + q * H + j0 + n, T(0));
      std::memcpy(s.dh_keep + b * H + j0, dh, size_t(n) * sizeof(T));
      continue;
    }
    if (s.mask) std::fill(s.dh_keep + b * H + j0, s.dh_keep + b * H + j0 + n, T(0));
    const T* g_b = s.gates + b * G;
    const T* i_b = g_b + j0;
    const T* f_b = g_b + H + j0;
    const T* gg_b = g_b + 2 * H + j0;
    const T* o_b = g_b + 3 * H + j0;
    const T* cp = s.c_prev + b * H + j0;
    const T* ac = s.ac + b * H + j0;
    T* dc = s.dc + b * H + j0;
    // h = o * a(c):  dc += dh * o * a'(c),  do = dh * a(c)
    NN_PRAGMA_SIMD
    for (index_t r = 0; r < n; ++r) t1[r] = dh[r] * o_b[r];
    act_grad_span(s.a, t1, ac, n);
    NN_PRAGMA_SIMD
    for (index_t r = 0; r < n; ++r) {
      const T dcr = dc[r] + t1[r];
      dzo[r] = dh[r] * ac[r];
      // c = f * c_prev + i * g
      dzi[r] = dcr * gg_b[r];
      dzf[r] = dcr * cp[r];
      dzg[r] = dcr * i_b[r];
      dc[r] = dcr * f_b[r];
    }
    act_grad_span(s.ra, dzi, i_b, n);
    act_grad_span(s.ra, dzf, f_b, n);
    act_grad_span(s.a, dzg, gg_b, n);
    act_grad_span(s.ra, dzo, o_b, n);
    if (s.dbias) {
      for (int q = 0; q < 4; ++q) {
        T* db = s.dbias + q * H + j0;
        const T* src = dz_b + q * H + j0;
        NN_PRAGMA_SIMD
        for (index_t r = 0; r < n; ++r) db[r] += src[r];
      }
    }
  }
}

// After the recurrent product of a backward step: dh_k = dh_k * rdm + dh_keep over the tile.
template <typename T>
NN_LSTM_INLINE void bwd_fix_body(T* dhn, const T* rdm, const T* dh_keep, index_t H, index_t b0,
                                 index_t b1, index_t j0, index_t j1) {
  for (index_t b = b0; b < b1; ++b) {
    T* d = dhn + b * H;
    if (rdm) {
      const T* m = rdm + b * H;
      NN_PRAGMA_SIMD
      for (index_t j = j0; j < j1; ++j) d[j] *= m[j];
    }
    if (dh_keep) {
      const T* k = dh_keep + b * H;
      NN_PRAGMA_SIMD
      for (index_t j = j0; j < j1; ++j) d[j] += k[j];
    }
  }
}

// ISA clones: one per dtype, serial loops over one thread's tile (called inside the region).
NN_ISA_CLONES(void, fwd_tile,
              (const FwdStep<float>& s, index_t b0, index_t b1, index_t j0, index_t j1, float* tmp),
              (s, b0, b1, j0, j1, tmp), fwd_tile_body)
NN_ISA_CLONES_F64(void, fwd_tile, (const FwdStep<double>& s, index_t b0, index_t b1, index_t j0,
               index_t j1, double* tmp), (s, b0, b1, j0, j1, tmp), fwd_tile_body)
NN_ISA_CLONES(void, bwd_tile,
              (const BwdStep<float>& s, index_t b0, index_t b1, index_t j0, index_t j1, float* tmp),
              (s, b0, b1, j0, j1, tmp), bwd_tile_body)
NN_ISA_CLONES_F64(void, bwd_tile, (const BwdStep<double>& s, index_t b0, index_t b1, index_t j0,
               index_t j1, double* tmp), (s, b0, b1, j0, j1, tmp), bwd_tile_body)
NN_ISA_CLONES(void, bwd_fix, (float* dhn, const float* rdm, const float* dh_keep, index_t H,
               index_t b0, index_t b1, index_t j0, index_t j1),
              (dhn, rdm, dh_keep, H, b0, b1, j0, j1), bwd_fix_body)
NN_ISA_CLONES_F64(void, bwd_fix, (double* dhn, const double* rdm, const double* dh_keep, index_t H,
               index_t b0, index_t b1, index_t j0, index_t j1),
              (dhn, rdm, dh_keep, H, b0, b1, j0, j1), bwd_fix_body)

// Vector-matrix product for one row (the small-batch recurrent step, where a GEMM micro-kernel
// would compute MR - 1 rows of padding): out[s n + r] = sum_k a[k] * m[k ldm + col[s] + r] for
// the nseg column segments s, r < n; out is overwritten. Columns go in blocks of W (8 AVX2
// registers of accumulators, kept in registers over the whole k loop); a narrower tail block
// accumulates in memory.
template <typename T>
NN_LSTM_INLINE void gemv_block(T* out, const T* a, index_t K, const T* m, index_t ldm) {
  constexpr int W = 256 / int(sizeof(T));
  T acc[W] = {};
  for (index_t k = 0; k < K; ++k) {
    const T a_k = a[k];
    const T* m_k = m + k * ldm;
    NN_PRAGMA_SIMD
    for (int r = 0; r < W; ++r) acc[r] += a_k * m_k[r];
  }
  std::memcpy(out, acc, sizeof acc);
}

template <typename T>
NN_LSTM_INLINE void gemv_tail(T* out, const T* a, index_t K, const T* m, index_t ldm, index_t w) {
  std::fill(out, out + w, T(0));
  for (index_t k = 0; k < K; ++k) {
    const T a_k = a[k];
    const T* m_k = m + k * ldm;
    NN_PRAGMA_SIMD
    for (index_t r = 0; r < w; ++r) out[r] += a_k * m_k[r];
  }
}

template <typename T>
NN_LSTM_INLINE void gemv_segments_body(T* out, const T* a, index_t K, const T* m, index_t ldm,
                                       const index_t* col, int nseg, index_t n) {
  constexpr index_t W = 256 / index_t(sizeof(T));
  for (int s = 0; s < nseg; ++s) {
    index_t r0 = 0;
    for (; r0 + W <= n; r0 += W) gemv_block(out + s * n + r0, a, K, m + col[s] + r0, ldm);
    if (r0 < n) gemv_tail(out + s * n + r0, a, K, m + col[s] + r0, ldm, n - r0);
  }
}

NN_ISA_CLONES(void, gemv_segments, (float* out, const float* a, index_t K, const float* m,
               index_t ldm, const index_t* col, int nseg, index_t n),
              (out, a, K, m, ldm, col, nseg, n), gemv_segments_body)
NN_ISA_CLONES_F64(void, gemv_segments, (double* out, const double* a, index_t K, const double* m,
               index_t ldm, const index_t* col, int nseg, index_t n),
              (out, a, K, m, ldm, col, nseg, n), gemv_segments_body)

// ---------------------------------------------------------------------------------------------
// The fused recurrent products (rnn_detail, recurrent_common.hpp), AVX2 + FMA and AVX-512.
// One register-blocked kernel serves every recurrent product of LSTM, GRU and SimpleRNN: a tile
// of R rows of A (read in place, no A packing) times one block of 4 W columns of B (4 panel
// vectors of W = vector width in T), R x 4 accumulators kept over the whole k loop (AVX2: R = 3,
// 12 accumulators + 3 broadcasts + 1 panel vector = the 16 ymm registers; AVX-512: R = 4, 16 of
// the 32 zmm); rows in tiles of RMAX, then 2, 1 (no padded edge tiles), column blocks outermost
// so that a block's panels (K x 4 W) are reused from L1/L2 by every row tile. Each element of C
// is one FMA chain over k = 0 .. K-1 from zero, whatever the tile, the ISA (AVX2 and AVX-512
// give the same bits) or the thread grid. (The LSTM's gate pass is kept out of the kernel:
// measured slower when done per 8-unit block, the activations dominate it.)
//
// Panels (pack_fused): column n of B at p[(n / W) K W + k W + n % W]; three zero vectors past
// the last, so a 4-vector block never reads beyond the buffer and tail lanes compute zeros.

#if NN_LSTM_X86
#define NN_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))

// One SIMD register of T: what the kernel needs. store_n writes the first n (< W) lanes only.
template <typename T>
struct Ymm;
template <>
struct Ymm<float> {
  using V = __m256;
  static constexpr index_t W = 8;
  NN_TARGET_AVX2 static V zero() { return _mm256_setzero_ps(); }
  NN_TARGET_AVX2 static V load(const float* p) { return _mm256_loadu_ps(p); }
  NN_TARGET_AVX2 static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  NN_TARGET_AVX2 static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  NN_TARGET_AVX2 static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  NN_TARGET_AVX2 static void store_n(float* p, V v, index_t n) {
    alignas(32) float buf[8];
    _mm256_store_ps(buf, v);
    std::memcpy(p, buf, size_t(n) * sizeof(float));
  }
};
template <>
struct Ymm<double> {
  using V = __m256d;
  static constexpr index_t W = 4;
  NN_TARGET_AVX2 static V zero() { return _mm256_setzero_pd(); }
  NN_TARGET_AVX2 static V load(const double* p) { return _mm256_loadu_pd(p); }
  NN_TARGET_AVX2 static V bcast(const double* p) { return _mm256_broadcast_sd(p); }
  NN_TARGET_AVX2 static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  NN_TARGET_AVX2 static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  NN_TARGET_AVX2 static void store_n(double* p, V v, index_t n) {
    alignas(32) double buf[4];
    _mm256_store_pd(buf, v);
    std::memcpy(p, buf, size_t(n) * sizeof(double));
  }
};
template <typename T>
struct Zmm;
template <>
struct Zmm<float> {
  using V = __m512;
  static constexpr index_t W = 16;
  NN_TARGET_AVX512 static V zero() { return _mm512_setzero_ps(); }
  NN_TARGET_AVX512 static V load(const float* p) { return _mm512_loadu_ps(p); }
  NN_TARGET_AVX512 static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  NN_TARGET_AVX512 static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  NN_TARGET_AVX512 static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  NN_TARGET_AVX512 static void store_n(float* p, V v, index_t n) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1u), v);
  }
};
template <>
struct Zmm<double> {
  using V = __m512d;
  static constexpr index_t W = 8;
  NN_TARGET_AVX512 static V zero() { return _mm512_setzero_pd(); }
  NN_TARGET_AVX512 static V load(const double* p) { return _mm512_loadu_pd(p); }
  NN_TARGET_AVX512 static V bcast(const double* p) { return _mm512_set1_pd(*p); }
  NN_TARGET_AVX512 static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  NN_TARGET_AVX512 static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  NN_TARGET_AVX512 static void store_n(double* p, V v, index_t n) {
    _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1u), v);
  }
};

// C[r, 0 .. n) = A[r, :] @ B[:, block] for r < R; pv: the block's first panel vector.
#define NN_FUSED_TILE_BODY(VEC)                                                            \
  using Y = VEC<T>;                                                                        \
  using V = typename Y::V;                                                                 \
  constexpr index_t W = Y::W;                                                              \
  const index_t vs = K * W;                                                                \
  V acc[R][4];                                                                             \
  _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r)                                      \
  _Pragma("GCC unroll 4") for (int v = 0; v < 4; ++v) acc[r][v] = Y::zero();               \
  _Pragma("GCC unroll 2") for (index_t k = 0; k < K; ++k) {                                \
    V x[R];                                                                                \
    _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r) x[r] = Y::bcast(a + r * lda + k);  \
    _Pragma("GCC unroll 4") for (int v = 0; v < 4; ++v) {                                  \
      const V w = Y::load(pv + v * vs + k * W);                                            \
      _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r) acc[r][v] =                      \
          Y::fma(x[r], w, acc[r][v]);                                                      \
    }                                                                                      \
  }                                                                                        \
  if (n == 4 * W) {                                                                        \
    _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r)                                    \
    _Pragma("GCC unroll 4") for (int v = 0; v < 4; ++v) Y::store(c + r * ldc + v * W,      \
                                                                 acc[r][v]);               \
  } else {                                                                                 \
    for (int r = 0; r < R; ++r)                                                            \
      for (int v = 0; v < 4; ++v) {                                                        \
        const index_t lanes = n - v * W;                                                   \
        if (lanes >= W)                                                                    \
          Y::store(c + r * ldc + v * W, acc[r][v]);                                        \
        else if (lanes > 0)                                                                \
          Y::store_n(c + r * ldc + v * W, acc[r][v], lanes);                               \
      }                                                                                    \
  }

// Column blocks outermost, then row tiles of RMAX, 2, 1.
#define NN_FUSED_PRODUCT_BODY(TILE, VEC, RMAX)                                             \
  constexpr index_t W = VEC<T>::W;                                                         \
  const index_t K = b.K;                                                                   \
  for (index_t col = c0; col < c1; col += 4 * W) {                                         \
    const T* pv = b.p.get() + (col / W) * K * W;                                           \
    const index_t n = std::min(4 * W, c1 - col);                                           \
    T* cc = C + (col - c0);                                                                \
    index_t r = 0;                                                                         \
    for (; r + RMAX <= rows; r += RMAX)                                                    \
      TILE<T, RMAX>(pv, K, A + r * lda, lda, cc + r * ldc, ldc, n);                        \
    if (rows - r >= 2) {                                                                   \
      TILE<T, 2>(pv, K, A + r * lda, lda, cc + r * ldc, ldc, n);                           \
      r += 2;                                                                              \
    }                                                                                      \
    if (rows - r == 1) TILE<T, 1>(pv, K, A + r * lda, lda, cc + r * ldc, ldc, n);          \
  }

template <typename T, int R>
NN_TARGET_AVX2 NN_LSTM_INLINE void tile_avx2(const T* pv, index_t K, const T* a, index_t lda,
                                             T* c, index_t ldc, index_t n) {
  NN_FUSED_TILE_BODY(Ymm)
}
template <typename T, int R>
NN_TARGET_AVX512 NN_LSTM_INLINE void tile_avx512(const T* pv, index_t K, const T* a,
                                                 index_t lda, T* c, index_t ldc, index_t n) {
  NN_FUSED_TILE_BODY(Zmm)
}
template <typename T>
NN_TARGET_AVX2 void product_avx2(const rnn_detail::FusedB<T>& b, const T* A, index_t lda,
                                 index_t rows, index_t c0, index_t c1, T* C, index_t ldc) {
  NN_FUSED_PRODUCT_BODY(tile_avx2, Ymm, 3)
}
template <typename T>
NN_TARGET_AVX512 void product_avx512(const rnn_detail::FusedB<T>& b, const T* A, index_t lda,
                                     index_t rows, index_t c0, index_t c1, T* C, index_t ldc) {
  NN_FUSED_PRODUCT_BODY(tile_avx512, Zmm, 4)
}
#undef NN_FUSED_TILE_BODY
#undef NN_FUSED_PRODUCT_BODY
#endif  // NN_LSTM_X86

}  // namespace

namespace rnn_detail {

Isa fused_isa(index_t B) {
#if NN_LSTM_X86
  if (B <= kLstmGemvMaxBatch) return Isa::ref;
  return family_isa(Family::lstm);
#else
  (void)B;
  return Isa::ref;
#endif
}

index_t fused_width(Isa isa, size_t elem) {
  return isa == Isa::avx512 ? index_t(64 / elem) : isa == Isa::avx2 ? index_t(32 / elem) : 0;
}

template <typename T>
FusedB<T> pack_fused(Isa isa, const T* src, index_t ldk, index_t ldn, index_t K, index_t N) {
  FusedB<T> b;
  b.W = fused_width(isa, sizeof(T));
  if (b.W == 0) return b;
  b.isa = isa;
  b.K = K;
  b.N = N;
  const index_t W = b.W, len = ((N + W - 1) / W + 3) * K * W;
  b.p = Scratch<T>(size_t(len));
  T* p = b.p.get();
  std::fill(p, p + len, T(0));
  for (index_t n = 0; n < N; ++n) {
    T* dst = p + (n / W) * K * W + n % W;
    const T* s = src + n * ldn;
    for (index_t k = 0; k < K; ++k) dst[k * W] = s[k * ldk];
  }
  return b;
}

template <typename T>
void fused_product(const FusedB<T>& b, const T* A, index_t lda, index_t rows, index_t c0,
                   index_t c1, T* C, index_t ldc) {
#if NN_LSTM_X86
  if (rows <= 0 || c1 <= c0) return;
  if (b.isa == Isa::avx512)
    product_avx512(b, A, lda, rows, c0, c1, C, ldc);
  else
    product_avx2(b, A, lda, rows, c0, c1, C, ldc);
#else
  (void)b, (void)A, (void)lda, (void)rows, (void)c0, (void)c1, (void)C, (void)ldc;
#endif
}

template FusedB<float> pack_fused<float>(Isa, const float*, index_t, index_t, index_t, index_t);
template FusedB<double> pack_fused<double>(Isa, const double*, index_t, index_t, index_t,
                                           index_t);
template void fused_product<float>(const FusedB<float>&, const float*, index_t, index_t, index_t,
                                   index_t, float*, index_t);
template void fused_product<double>(const FusedB<double>&, const double*, index_t, index_t,
                                    index_t, index_t, double*, index_t);

}  // namespace rnn_detail

namespace {
// ---------------------------------------------------------------------------------------------
// Thread grid: pb row groups x pu unit groups; unit groups are whole NR-wide blocks of units.
struct Grid {
  int nt, pb, pu;
  index_t nr, nblk;
};

struct Tile {
  index_t b0, b1, j0, j1;
  bool last_u;
};

// The whole call on the calling thread (grid, GEMMs): its forward flops 2 B T (I + H) G are
// below kLstmParallelFlops.
bool serial_call(const LstmDims& d) {
  return 2.0 * double(d.B) * double(d.T) * double(d.I + d.H) * double(4 * d.H) <
         kLstmParallelFlops;
}

// C = op(A) op(B) as nanonet::gemm, or on this thread only for a serial call.
Grid make_grid(index_t B, index_t H, index_t nr, bool serial) {
  const int nt = serial ? 1 : get_num_threads();
  const index_t nblk = std::max<index_t>(1, (H + nr - 1) / nr);
  const int pb = int(std::max<index_t>(1, std::min<index_t>(nt, B)));
  // Unit groups cost a barrier per step: only when a step is big enough to hide one.
  const double step_flops = 2.0 * double(B) * double(H) * double(4 * H);
  const int pu_max = step_flops >= kLstmBarrierStepFlops ? nt / pb : 1;
  const int pu = int(std::max<index_t>(1, std::min<index_t>(pu_max, nblk)));
  return Grid{pb * pu, pb, pu, nr, nblk};
}

Tile tile_of(const Grid& g, int tid, index_t B, index_t H) {
  const int rg = tid / g.pu, ug = tid % g.pu;
  Tile t;
  t.b0 = B * rg / g.pb;
  t.b1 = B * (rg + 1) / g.pb;
  t.last_u = ug == g.pu - 1;
  t.j0 = std::min(H, g.nblk * ug / g.pu * g.nr);
  t.j1 = t.last_u ? H : std::min(H, g.nblk * (ug + 1) / g.pu * g.nr);
  return t;
}

// Ask for rows [b0, b1) of a (rows x ld) block in L2 ahead of use: the caches of the next step
// are read from memory while this step's recurrent product runs.
template <typename T>
inline void prefetch_rows(const T* p, index_t ld, index_t b0, index_t b1, index_t width) {
#if defined(__GNUC__) || defined(__clang__)
  const index_t per_line = index_t(64 / sizeof(T));
  for (index_t b = b0; b < b1; ++b)
    for (index_t e = 0; e < width; e += per_line) __builtin_prefetch(p + b * ld + e, 0, 2);
#else
  (void)p, (void)ld, (void)b0, (void)b1, (void)width;
#endif
}

inline void barrier_if(bool needed) {
  if (needed) {
#pragma omp barrier
  }
}

// xd[k, b, :] = x[b, t(k), :] * input_dropout_mask[b, :]   (time-major, processing order, row
// stride ldxd)
}  // namespace

// ---------------------------------------------------------------------------------------------
// Fast forward.
template <typename T>
void lstm_forward(T* y, T* h_n, T* c_n, const LstmCache<T>* cache, const LstmInputs<T>& in,
                  const LstmDims& d) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = 4 * H;
  const bool train = cache != nullptr;
  const T* rdm = in.recurrent_dropout_mask;

  // Input projection of all T * B rows at once: gates = xd @ kernel (bias joins per step).
  // Training: xd lives in the cache's xh (row stride XH = I + H), beside hd.
  const index_t XH = I + H;
  std::unique_ptr<Scratch<T>> xd_s, gates_s;
  T* xd = train ? cache->xh : (xd_s.reset(new Scratch<T>(size_t(TT * B * I))), xd_s->get());
  const index_t ldxd = train ? XH : I;
  T* gates = train ? cache->gates
                   : (gates_s.reset(new Scratch<T>(size_t(TT * B * G))), gates_s->get());
  gather_inputs(xd, ldxd, in.x, in.input_dropout_mask, B, TT, I, d.go_backwards);
  const bool serial = serial_call(d);
  call_gemm<T>(serial, false, false, TT * B, G, I, xd, ldxd, in.kernel, G, gates, G);

  // States. c: all T + 1 slices when training, else a ring of two. h_k: training without
  // recurrent dropout, in xh (k < T) and h_n (k = T); otherwise a ring of two (row stride H),
  // and hd_k = h_k * rdm in xh when training, in a ring of two for inference.
  Scratch<T> ring(size_t(6) * size_t(B * H));
  const bool h_in_xh = train && !rdm;
  T* cs = train ? cache->c : ring.get() + 2 * B * H;
  T* acs = train ? cache->ac : nullptr;
  auto cslot = [&](index_t k) { return cs + (train ? k : (k & 1)) * B * H; };
  auto hptr = [&](index_t k) -> T* {
    if (!h_in_xh) return ring.get() + (k & 1) * B * H;
    return k < TT ? cache->xh + k * B * XH + I : h_n;
  };
  auto hld = [&](index_t k) -> index_t { return h_in_xh && k < TT ? XH : H; };
  auto hdptr = [&](index_t k) -> T* {
    return train ? cache->xh + k * B * XH + I : ring.get() + (4 + (k & 1)) * B * H;
  };
  const index_t hdld = train ? XH : H;
  for (index_t b = 0; b < B; ++b) {
    T* h0_b = hptr(0) + b * hld(0);
    if (in.h0)
      std::memcpy(h0_b, in.h0 + b * H, size_t(H) * sizeof(T));
    else
      std::fill(h0_b, h0_b + H, T(0));
    if (rdm)
      for (index_t j = 0; j < H; ++j) hdptr(0)[b * hdld + j] = h0_b[j] * rdm[b * H + j];
  }
  copy_or_zero(cs, in.c0, B * H);

  // The recurrent kernel, packed once. With several unit groups its columns are permuted so
  // that each group's four gates are adjacent: group [j0, j1) owns columns [4 j0, 4 j1), gate q
  // of unit j at 4 j0 + q (j1 - j0) + (j - j0).
  // The fused products (rnn_detail; by B and the CPU alone, like gemv) use unit groups of
  // whole W-wide vectors, the GEMM path whole NR-wide panels.
  const index_t nr = gemm_ukernel<T>().nr;
  const Isa fisa = fused_isa(B);
  const bool fused = fisa != Isa::ref;
  const Grid grid = make_grid(B, H, fused ? fused_width(fisa, sizeof(T)) : nr, serial);
  const bool gemv = B <= kLstmGemvMaxBatch;  // by B alone: the same arithmetic for any grid
  const bool gemm_step = !gemv && !fused;
  Scratch<T> rperm(grid.pu > 1 && !gemv ? size_t(H * G) : 1);
  const T* rsrc = in.recurrent_kernel;
  if (grid.pu > 1 && !gemv) {
    for (int ug = 0; ug < grid.pu; ++ug) {
      const Tile t = tile_of(grid, ug, B, H);
      const index_t n = t.j1 - t.j0;
      for (index_t row = 0; row < H; ++row)
        for (int q = 0; q < 4; ++q)
          std::memcpy(rperm.get() + row * G + 4 * t.j0 + q * n,
                      in.recurrent_kernel + row * G + q * H + t.j0, size_t(n) * sizeof(T));
    }
    rsrc = rperm.get();
  }
  const PackedB<T> rp = gemm_step ? pack_b<T>(false, H, G, rsrc, G) : PackedB<T>();
  const FusedB<T> fb = fused ? pack_fused(fisa, rsrc, G, 1, H, G) : FusedB<T>();
  Scratch<T> zr(size_t(B * G));
  const index_t tmp_ld = 5 * std::max<index_t>(H, 1);
  Scratch<T> tmp(size_t(grid.nt) * size_t(tmp_ld));

#pragma omp parallel num_threads(grid.nt) if (grid.nt > 1)
  {
    const int tid = thread_id();
    const Tile tl = tile_of(grid, tid, B, H);
    const index_t q0 = grid.pu > 1 ? 4 * tl.j0 / nr : 0;
    const index_t q1 = grid.pu > 1 && !tl.last_u ? 4 * tl.j1 / nr : rp.panels();
    const index_t gates_col[4] = {tl.j0, H + tl.j0, 2 * H + tl.j0, 3 * H + tl.j0};
    T* tmp_t = tmp.get() + tid * tmp_ld;
    FwdStep<T> s{};
    s.keep = train;
    s.H = H;
    s.G = G;
    s.a = d.activation;
    s.ra = d.recurrent_activation;
    s.zr = zr.get();
    s.bias = in.bias;
    s.rdm = rdm;
    s.y_ld = TT * H;
    s.mask_ld = TT;
    for (index_t k = 0; k < TT; ++k) {
      const index_t t = d.go_backwards ? TT - 1 - k : k;
      const T* a_k = rdm ? hdptr(k) : hptr(k);
      const index_t lda = rdm ? hdld : hld(k);
      if (k + 1 < TT) prefetch_rows(gates + (k + 1) * B * G, G, tl.b0, tl.b1, G);
      s.gates = gates + k * B * G;
      s.c_prev = cslot(k);
      s.c_out = cslot(k + 1);
      s.ac_out = acs ? acs + k * B * H : nullptr;
      s.h_prev = hptr(k);
      s.hp_ld = hld(k);
      s.h_out = hptr(k + 1);
      s.ho_ld = hld(k + 1);
      s.hd_out = (rdm && k + 1 < TT) ? hdptr(k + 1) : nullptr;
      s.hd_ld = hdld;
      s.y = y ? y + k * H : nullptr;
      s.mask = in.mask ? in.mask + t : nullptr;
      if (fused) {  // zr as below, from h_k in place and the packed (permuted) kernel
        fused_product(fb, a_k + tl.b0 * lda, lda, tl.b1 - tl.b0, 4 * tl.j0, 4 * tl.j1,
                      zr.get() + tl.b0 * G + 4 * tl.j0, G);
      } else if (gemv) {  // zr[b, 4 j0 + q n + r] = h_k[b, :] @ recurrent_kernel[:, q H + j0 + r]
        for (index_t b = tl.b0; b < tl.b1; ++b)
          gemv_segments(zr.get() + b * G + 4 * tl.j0, a_k + b * lda, H, in.recurrent_kernel, G,
                        gates_col, 4, tl.j1 - tl.j0);
      } else if (tl.b1 > tl.b0) {
        gemm_packed_serial<T>(false, tl.b1 - tl.b0, T(1), a_k + tl.b0 * lda, lda, rp, q0, q1, T(0),
                              zr.get() + tl.b0 * G, G);
      }
      fwd_tile(s, tl.b0, tl.b1, tl.j0, tl.j1, tmp_t);
      barrier_if(grid.pu > 1);
    }
  }
  if (!h_in_xh) std::memcpy(h_n, hptr(TT), size_t(B * H) * sizeof(T));
  std::memcpy(c_n, cslot(TT), size_t(B * H) * sizeof(T));
}

// ---------------------------------------------------------------------------------------------
// Fast backward.
// The body of lstm_backward and lstm_backward_dz: dz_out (T, B, G) or nullptr (a scratch
// buffer); dkernel == nullptr skips the weight gradients.
template <typename T>
void backward_body(T* dx, T* dkernel, T* drecurrent_kernel, T* dbias, T* dh0, T* dc0, T* dz_out,
                   const T* dy, const T* dh_n, const T* dc_n, const LstmCache<T>& cache,
                   const LstmInputs<T>& in, const LstmDims& d) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = 4 * H;
  const T* rdm = in.recurrent_dropout_mask;
  // dh0 / dc0 carry the running gradients reaching h_k / c_k.
  copy_or_zero(dh0, dh_n, B * H);
  copy_or_zero(dc0, dc_n, B * H);

  const index_t nr = gemm_ukernel<T>().nr;
  const bool serial = serial_call(d);
  // recurrent_kernel^T: packed for the fused products (rnn_detail; dz_k read in place) or the
  // GEMM, or plainly transposed (G, H) for the row products.
  const Isa fisa = fused_isa(B);
  const bool fused = fisa != Isa::ref;
  const Grid grid = make_grid(B, H, fused ? fused_width(fisa, sizeof(T)) : nr, serial);
  const bool gemv = B <= kLstmGemvMaxBatch;
  const FusedB<T> fb = fused ? pack_fused(fisa, in.recurrent_kernel, 1, G, G, H) : FusedB<T>();
  const PackedB<T> rtp =
      gemv || fused ? PackedB<T>() : pack_b<T>(true, G, H, in.recurrent_kernel, G);
  Scratch<T> rt(gemv ? size_t(G * H) : 1);
  if (gemv)
    for (index_t j = 0; j < H; ++j)
      for (index_t g = 0; g < G; ++g) rt.get()[g * H + j] = in.recurrent_kernel[j * G + g];
  Scratch<T> dz_scratch(dz_out ? 1 : size_t(TT * B * G));
  T* const dzp = dz_out ? dz_out : dz_scratch.get();
  Scratch<T> dh_keep(in.mask ? size_t(B * H) : 1);
  Scratch<T> tmp(size_t(grid.nt) * size_t(2 * std::max<index_t>(H, 1)));
  Scratch<T> dbias_part(dbias ? size_t(grid.nt) * size_t(std::max<index_t>(G, 1)) : 1);
  if (dbias) std::fill(dbias_part.get(), dbias_part.get() + grid.nt * G, T(0));

#pragma omp parallel num_threads(grid.nt) if (grid.nt > 1)
  {
    const int tid = thread_id();
    const Tile tl = tile_of(grid, tid, B, H);
    const index_t q0 = tl.j0 / nr;
    const index_t q1 = tl.last_u ? rtp.panels() : tl.j1 / nr;
    T* tmp_t = tmp.get() + tid * 2 * std::max<index_t>(H, 1);
    BwdStep<T> s{};
    s.H = H;
    s.G = G;
    s.a = d.activation;
    s.ra = d.recurrent_activation;
    s.dy_ld = TT * H;
    s.dhn = dh0;
    s.dc = dc0;
    s.dh_keep = in.mask ? dh_keep.get() : nullptr;
    s.mask_ld = TT;
    s.dbias = dbias ? dbias_part.get() + tid * G : nullptr;
    for (index_t k = TT - 1; k >= 0; --k) {
      const index_t t = d.go_backwards ? TT - 1 - k : k;
      s.gates = cache.gates + k * B * G;
      s.c_prev = cache.c + k * B * H;
      s.ac = cache.ac + k * B * H;
      s.dy = dy ? dy + k * H : nullptr;
      s.dz = dzp + k * B * G;
      s.mask = in.mask ? in.mask + t : nullptr;
      bwd_tile(s, tl.b0, tl.b1, tl.j0, tl.j1, tmp_t);
      barrier_if(grid.pu > 1);
      if (k > 0) {
        prefetch_rows(cache.gates + (k - 1) * B * G, G, tl.b0, tl.b1, G);
        prefetch_rows(cache.c + (k - 1) * B * H, H, tl.b0, tl.b1, H);
        prefetch_rows(cache.ac + (k - 1) * B * H, H, tl.b0, tl.b1, H);
        if (dy) prefetch_rows(dy + (k - 1) * H, TT * H, tl.b0, tl.b1, H);
      }
      // dh_k (own tile) = dz_k @ recurrent_kernel^T, then * rdm, + dh of masked rows.
      if (tl.b1 > tl.b0) {
        if (fused) {
          fused_product(fb, s.dz + tl.b0 * G, G, tl.b1 - tl.b0, tl.j0, tl.j1,
                        dh0 + tl.b0 * H + tl.j0, H);
        } else if (gemv) {
          const index_t col[1] = {tl.j0};
          for (index_t b = tl.b0; b < tl.b1; ++b)
            gemv_segments(dh0 + b * H + tl.j0, s.dz + b * G, G, rt.get(), H, col, 1,
                          tl.j1 - tl.j0);
        } else {
          gemm_packed_serial<T>(false, tl.b1 - tl.b0, T(1), s.dz + tl.b0 * G, G, rtp, q0, q1,
                                T(0), dh0 + tl.b0 * H, H);
        }
        if (rdm || in.mask) bwd_fix(dh0, rdm, s.dh_keep, H, tl.b0, tl.b1, tl.j0, tl.j1);
      }
    }
  }

  // Weight gradients over all T * B rows at once: [dkernel; drecurrent_kernel] = xh^T dz, one
  // GEMM when the two outputs are adjacent.
  const index_t XH = I + H;
  if (!dkernel) {
    // lstm_backward_dz: the caller forms the weight gradients from dz.
  } else if (drecurrent_kernel == dkernel + I * G) {
    call_gemm<T>(serial, true, false, XH, G, TT * B, cache.xh, XH, dzp, G, dkernel, G);
  } else {
    call_gemm<T>(serial, true, false, I, G, TT * B, cache.xh, XH, dzp, G, dkernel, G);
    call_gemm<T>(serial, true, false, H, G, TT * B, cache.xh + I, XH, dzp, G,
                 drecurrent_kernel, G);
  }
  if (dbias) {
    std::fill(dbias, dbias + G, T(0));
    for (int p = 0; p < grid.nt; ++p)
      for (index_t j = 0; j < G; ++j) dbias[j] += dbias_part.get()[p * G + j];
  }
  if (dx) {
    Scratch<T> dxt(size_t(TT * B * I));
    call_gemm<T>(serial, false, true, TT * B, I, G, dzp, G, in.kernel, G, dxt.get(), I);
    scatter_input_grads(dx, dxt.get(), in.input_dropout_mask, B, TT, I, d.go_backwards);
  }
}

template <typename T>
void lstm_backward(T* dx, T* dkernel, T* drecurrent_kernel, T* dbias, T* dh0, T* dc0,
                   const T* dy, const T* dh_n, const T* dc_n, const LstmCache<T>& cache,
                   const LstmInputs<T>& in, const LstmDims& d) {
  backward_body(dx, dkernel, drecurrent_kernel, dbias, dh0, dc0, static_cast<T*>(nullptr), dy,
                dh_n, dc_n, cache, in, d);
}

template <typename T>
void lstm_backward_dz(T* dx, T* dz, T* dh0, T* dc0, const T* dy, const T* dh_n, const T* dc_n,
                      const LstmCache<T>& cache, const LstmInputs<T>& in, const LstmDims& d) {
  backward_body(dx, static_cast<T*>(nullptr), static_cast<T*>(nullptr), static_cast<T*>(nullptr),
                dh0, dc0, dz, dy, dh_n, dc_n, cache, in, d);
}

// ---------------------------------------------------------------------------------------------
// Scalar specification.
namespace {

template <typename T>
T act_ref(LstmAct a, T x) {
  switch (a) {
    case LstmAct::tanh: return std::tanh(x);
    case LstmAct::sigmoid: return T(1) / (T(1) + std::exp(-x));
    case LstmAct::relu: return x < T(0) ? T(0) : x;
    default: return x;
  }
}

template <typename T>
T act_grad_ref(LstmAct a, T y) {  // f'(x) from y = f(x)
  switch (a) {
    case LstmAct::tanh: return T(1) - y * y;
    case LstmAct::sigmoid: return y * (T(1) - y);
    case LstmAct::relu: return y > T(0) ? T(1) : T(0);
    default: return T(1);
  }
}

}  // namespace

template <typename T>
void lstm_forward_ref(T* y, T* h_n, T* c_n, const LstmCache<T>* cache, const LstmInputs<T>& in,
                      const LstmDims& d) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = 4 * H;
  std::vector<T> h(size_t(B * H), T(0)), c(size_t(B * H), T(0));
  if (in.h0) std::copy(in.h0, in.h0 + B * H, h.begin());
  if (in.c0) std::copy(in.c0, in.c0 + B * H, c.begin());
  const index_t XH = I + H;
  if (cache) std::copy(c.begin(), c.end(), cache->c);
  std::vector<T> h_new(h), c_new(c), xk(size_t(std::max<index_t>(I, 1))),
      hk(size_t(std::max<index_t>(H, 1))), z(size_t(std::max<index_t>(G, 1)));
  for (index_t k = 0; k < TT; ++k) {
    const index_t t = d.go_backwards ? TT - 1 - k : k;
    for (index_t b = 0; b < B; ++b) {
      for (index_t i = 0; i < I; ++i)
        xk[i] = in.x[(b * TT + t) * I + i] *
                (in.input_dropout_mask ? in.input_dropout_mask[b * I + i] : T(1));
      for (index_t j = 0; j < H; ++j)
        hk[j] = h[b * H + j] * (in.recurrent_dropout_mask ? in.recurrent_dropout_mask[b * H + j]
                                                          : T(1));
      for (index_t col = 0; col < G; ++col) {
        T acc = in.bias ? in.bias[col] : T(0);
        for (index_t i = 0; i < I; ++i) acc += xk[i] * in.kernel[i * G + col];
        for (index_t j = 0; j < H; ++j) acc += hk[j] * in.recurrent_kernel[j * G + col];
        z[col] = acc;
      }
      const bool valid = !in.mask || in.mask[b * TT + t] != 0;
      for (index_t j = 0; j < H; ++j) {
        const T ig = act_ref(d.recurrent_activation, z[j]);
        const T fg = act_ref(d.recurrent_activation, z[H + j]);
        const T gg = act_ref(d.activation, z[2 * H + j]);
        const T og = act_ref(d.recurrent_activation, z[3 * H + j]);
        const T cv = valid ? fg * c[b * H + j] + ig * gg : c[b * H + j];
        const T ac = act_ref(d.activation, cv);
        const T hv = valid ? og * ac : h[b * H + j];
        c_new[b * H + j] = cv;
        h_new[b * H + j] = hv;
        if (y) y[(b * TT + k) * H + j] = hv;
        if (cache) {
          T* g = cache->gates + (k * B + b) * G;
          g[j] = ig;
          g[H + j] = fg;
          g[2 * H + j] = gg;
          g[3 * H + j] = og;
          cache->ac[(k * B + b) * H + j] = ac;
        }
      }
      if (cache) {
        std::copy(xk.begin(), xk.begin() + I, cache->xh + (k * B + b) * XH);
        std::copy(hk.begin(), hk.begin() + H, cache->xh + (k * B + b) * XH + I);
      }
    }
    h.swap(h_new);
    c.swap(c_new);
    if (cache) std::copy(c.begin(), c.end(), cache->c + (k + 1) * B * H);
  }
  std::copy(h.begin(), h.end(), h_n);
  std::copy(c.begin(), c.end(), c_n);
}

template <typename T>
void lstm_backward_ref(T* dx, T* dkernel, T* drecurrent_kernel, T* dbias, T* dh0, T* dc0,
                       const T* dy, const T* dh_n, const T* dc_n, const LstmCache<T>& cache,
                       const LstmInputs<T>& in, const LstmDims& d) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = 4 * H;
  std::vector<T> dh(size_t(B * H), T(0)), dc(size_t(B * H), T(0)), dh_prev(size_t(B * H)),
      dz(size_t(std::max<index_t>(G, 1)));
  if (dh_n) std::copy(dh_n, dh_n + B * H, dh.begin());
  if (dc_n) std::copy(dc_n, dc_n + B * H, dc.begin());
  std::fill(dkernel, dkernel + I * G, T(0));
  std::fill(drecurrent_kernel, drecurrent_kernel + H * G, T(0));
  if (dbias) std::fill(dbias, dbias + G, T(0));
  if (dx) std::fill(dx, dx + B * TT * I, T(0));
  for (index_t k = TT - 1; k >= 0; --k) {
    const index_t t = d.go_backwards ? TT - 1 - k : k;
    for (index_t b = 0; b < B; ++b) {
      T* dh_b = dh.data() + b * H;
      T* dc_b = dc.data() + b * H;
      if (dy)
        for (index_t j = 0; j < H; ++j) dh_b[j] += dy[(b * TT + k) * H + j];
      const bool valid = !in.mask || in.mask[b * TT + t] != 0;
      if (!valid) {  // carried state: the gradients pass through unchanged
        std::copy(dh_b, dh_b + H, dh_prev.begin() + b * H);
        continue;
      }
      const T* g = cache.gates + (k * B + b) * G;
      for (index_t j = 0; j < H; ++j) {
        const T ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
        const T ac = cache.ac[(k * B + b) * H + j];
        const T cp = cache.c[(k * B + b) * H + j];
        // h = o * a(c)
        const T dcv = dc_b[j] + dh_b[j] * og * act_grad_ref(d.activation, ac);
        dz[3 * H + j] = dh_b[j] * ac * act_grad_ref(d.recurrent_activation, og);
        // c = f * c_prev + i * g
        dz[j] = dcv * gg * act_grad_ref(d.recurrent_activation, ig);
        dz[H + j] = dcv * cp * act_grad_ref(d.recurrent_activation, fg);
        dz[2 * H + j] = dcv * ig * act_grad_ref(d.activation, gg);
        dc_b[j] = dcv * fg;
      }
      const T* xk = cache.xh + (k * B + b) * (I + H);
      const T* hk = xk + I;
      for (index_t col = 0; col < G; ++col) {
        for (index_t i = 0; i < I; ++i) dkernel[i * G + col] += xk[i] * dz[col];
        for (index_t j = 0; j < H; ++j) drecurrent_kernel[j * G + col] += hk[j] * dz[col];
        if (dbias) dbias[col] += dz[col];
      }
      for (index_t i = 0; dx && i < I; ++i) {
        T acc = T(0);
        for (index_t col = 0; col < G; ++col) acc += dz[col] * in.kernel[i * G + col];
        dx[(b * TT + t) * I + i] =
            acc * (in.input_dropout_mask ? in.input_dropout_mask[b * I + i] : T(1));
      }
      for (index_t j = 0; j < H; ++j) {
        T acc = T(0);
        for (index_t col = 0; col < G; ++col) acc += dz[col] * in.recurrent_kernel[j * G + col];
        dh_prev[b * H + j] =
            acc * (in.recurrent_dropout_mask ? in.recurrent_dropout_mask[b * H + j] : T(1));
      }
    }
    dh.swap(dh_prev);
  }
  std::copy(dh.begin(), dh.end(), dh0);
  std::copy(dc.begin(), dc.end(), dc0);
}

#define NN_LSTM_INSTANTIATE(T)                                                                 \
  template void lstm_forward<T>(T*, T*, T*, const LstmCache<T>*, const LstmInputs<T>&,         \
                                const LstmDims&);                                              \
  template void lstm_backward_dz<T>(T*, T*, T*, T*, const T*, const T*, const T*,            \
                                    const LstmCache<T>&, const LstmInputs<T>&, const LstmDims&); \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,         \
                                 const LstmCache<T>&, const LstmInputs<T>&, const LstmDims&);  \
  template void lstm_forward_ref<T>(T*, T*, T*, const LstmCache<T>*, const LstmInputs<T>&,     \
                                    const LstmDims&);                                          \
  template void lstm_backward_ref<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,     \
                                     const LstmCache<T>&, const LstmInputs<T>&, const LstmDims&);
NN_LSTM_INSTANTIATE(float)
NN_LSTM_INSTANTIATE(double)
#undef NN_LSTM_INSTANTIATE

}  // namespace nanonet
