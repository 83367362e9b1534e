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
// The forward step's recurrent products, fused (AVX2 + FMA; used when family_isa(lstm) >= avx2 and
// B > kLstmGemvMaxBatch). For a tile of R <= 3 rows of h_k and one block of W = 32 / sizeof(T)
// hidden units [u, u + W), the four gate pre-activations h_k @ recurrent_kernel[:, q H + u ..
// + W] (q = i, f, c~, o) accumulate in 4 R registers over k = 0 .. H-1, reading h_k in place
// (no A packing) and the recurrent kernel from gate-interleaved panels packed once per call;
// rows go in tiles of 3, 2, 1 (no padded MR = 6 edge tiles: 32 rows = 10 x 3 + 2). The result
// lands in zr in fwd_tile's layout, and fwd_tile does the gate pass as before. Each element is
// the same FMA chain over k whatever the tile, so results do not depend on the thread grid.
// (Doing the gate pass per unit block inside the kernel was measured slower: the activations
// dominate it, and 8-unit pieces of 32 rows cost more than long contiguous spans.)
//
// Panel layout (pack_fused_panels): unit block u (units [u W, u W + W)) holds H rows of 4 W:
// panel[(u H + k) 4W + q W + r] = recurrent_kernel[k, q H + u W + r], zero beyond H.
template <typename T>
constexpr index_t fused_width() {
  return index_t(32 / sizeof(T));
}

template <typename T>
Scratch<T> pack_fused_panels(const T* rk, index_t H) {
  constexpr index_t W = fused_width<T>();
  const index_t nub = (H + W - 1) / W, G = 4 * H;
  Scratch<T> p(size_t(nub * H * 4 * W));
  for (index_t u = 0; u < nub; ++u) {
    const index_t n = std::min(W, H - u * W);
    for (index_t k = 0; k < H; ++k) {
      T* dst = p.get() + (u * H + k) * 4 * W;
      for (int q = 0; q < 4; ++q) {
        const T* src = rk + k * G + q * H + u * W;
        for (index_t r = 0; r < W; ++r) dst[q * W + r] = r < n ? src[r] : T(0);
      }
    }
  }
  return p;
}

// Backward panels (bwd_products): recurrent_kernel^T in blocks of W units, each G rows of W:
// panel[(v G + g) W + r] = recurrent_kernel[v W + r, g], zero beyond H.
template <typename T>
Scratch<T> pack_bwd_panels(const T* rk, index_t H) {
  constexpr index_t W = fused_width<T>();
  const index_t nv = (H + W - 1) / W, G = 4 * H;
  Scratch<T> p(size_t(nv * G * W));
  std::fill(p.get(), p.get() + nv * G * W, T(0));
  for (index_t j = 0; j < H; ++j) {
    T* dst = p.get() + (j / W) * G * W + j % W;
    const T* src = rk + j * G;
    for (index_t g = 0; g < G; ++g) dst[g * W] = src[g];
  }
  return p;
}

#if NN_LSTM_X86
// One ymm of T: the few operations the fused kernel needs.
template <typename T>
struct Ymm;
template <>
struct Ymm<float> {
  using V = __m256;
  NN_TARGET_AVX2 static V zero() { return _mm256_setzero_ps(); }
  NN_TARGET_AVX2 static V load(const float* p) { return _mm256_loadu_ps(p); }
  NN_TARGET_AVX2 static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  NN_TARGET_AVX2 static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  NN_TARGET_AVX2 static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
};
template <>
struct Ymm<double> {
  using V = __m256d;
  NN_TARGET_AVX2 static V zero() { return _mm256_setzero_pd(); }
  NN_TARGET_AVX2 static V load(const double* p) { return _mm256_loadu_pd(p); }
  NN_TARGET_AVX2 static V bcast(const double* p) { return _mm256_broadcast_sd(p); }
  NN_TARGET_AVX2 static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  NN_TARGET_AVX2 static void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
};

// Recurrent products of rows [b, b + R) (R <= 3) for one unit block [u, u + n) of the tile
// [j0, j1): 4 R accumulators (12, plus one panel vector and three broadcasts, fill the 16 ymm
// registers), stored in fwd_tile's zr layout, zr[row, 4 j0 + q (j1 - j0) + u - j0 + lane]
// (row stride ldz); a narrow block (n < W) through a buffer, so no lane spills into the next
// gate's columns.
template <typename T, int R>
NN_TARGET_AVX2 NN_LSTM_INLINE void fused_rows_avx2(const T* panel, index_t H, const T* a,
                                                   index_t lda, T* zr, index_t ldz, index_t nt,
                                                   index_t n) {
  using Y = Ymm<T>;
  using V = typename Y::V;
  constexpr index_t W = fused_width<T>();
  V acc[R][4];
#pragma GCC unroll 3
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) acc[r][q] = Y::zero();
#pragma GCC unroll 2
  for (index_t k = 0; k < H; ++k) {
    V x[R];
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r) x[r] = Y::bcast(a + r * lda + k);
    const T* p_k = panel + k * 4 * W;
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const V w = Y::load(p_k + q * W);
#pragma GCC unroll 3
      for (int r = 0; r < R; ++r) acc[r][q] = Y::fma(x[r], w, acc[r][q]);
    }
  }
  if (n == W) {
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) Y::storeu(zr + r * ldz + q * nt, acc[r][q]);
  } else {
    alignas(32) T buf[R * 4 * W];
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) Y::storeu(buf + (r * 4 + q) * W, acc[r][q]);
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < 4; ++q)
        std::memcpy(zr + r * ldz + q * nt, buf + (r * 4 + q) * W, size_t(n) * sizeof(T));
  }
}

// The recurrent products of rows [b, b1) x the tile's units [j0, j1) into zr (row b at zr), unit
// blocks outermost: a block's panel (H x 4W) is read from L2 once per step and reused from L1
// by the row tiles.
template <typename T>
NN_TARGET_AVX2 NN_LSTM_INLINE void fused_products_avx2(const T* panels, index_t H, const T* a,
                                                      index_t lda, index_t b, index_t b1,
                                                      index_t j0, index_t j1, T* zr,
                                                      index_t ldz) {
  constexpr index_t W = fused_width<T>();
  const index_t nt = j1 - j0;
  for (index_t u = j0; u < j1; u += W) {
    const T* panel = panels + (u / W) * H * 4 * W;
    const index_t n = std::min(W, j1 - u);
    T* zr_u = zr + 4 * j0 + (u - j0);
    index_t r = b;
    for (; r + 3 <= b1; r += 3)
      fused_rows_avx2<T, 3>(panel, H, a + r * lda, lda, zr_u + (r - b) * ldz, ldz, nt, n);
    if (b1 - r == 2)
      fused_rows_avx2<T, 2>(panel, H, a + r * lda, lda, zr_u + (r - b) * ldz, ldz, nt, n);
    if (b1 - r == 1)
      fused_rows_avx2<T, 1>(panel, H, a + r * lda, lda, zr_u + (r - b) * ldz, ldz, nt, n);
  }
}

NN_TARGET_AVX2 void fused_products(const float* panels, index_t H, const float* a, index_t lda,
                                    index_t b, index_t b1, index_t j0, index_t j1, float* zr,
                                    index_t ldz) {
  fused_products_avx2(panels, H, a, lda, b, b1, j0, j1, zr, ldz);
}
NN_TARGET_AVX2 void fused_products(const double* panels, index_t H, const double* a,
                                    index_t lda, index_t b, index_t b1, index_t j0, index_t j1,
                                    double* zr, index_t ldz) {
  fused_products_avx2(panels, H, a, lda, b, b1, j0, j1, zr, ldz);
}

// The backward step's recurrent product dh_k = dz_k @ recurrent_kernel^T, fused (same condition
// as the forward's). For a tile of R <= 3 rows of dz_k and a block of NV <= 4 vectors of W
// hidden units, the R NV dot products over the G gate columns accumulate in registers (12, plus
// one panel vector and three broadcasts, fill the 16 ymm registers), reading dz_k in place (no
// A packing) and recurrent_kernel^T from W-unit panels packed once per call (pack_bwd_panels);
// rows go in tiles of 3, 2, 1. Each element is one FMA chain over g = 0 .. G-1 whatever the
// tile, so results do not depend on the thread grid. (Chunking g so that the block's panels
// stay in L1 across row tiles, as the GEMM's KC does, was measured no faster at H = 128 and
// H = 512: L2 keeps up with 4 panel loads per 12 FMAs.)
template <typename T, int R, int NV>
NN_TARGET_AVX2 NN_LSTM_INLINE void bwd_rows_avx2(const T* pv, index_t pstride, index_t G,
                                                 const T* a, index_t lda, T* out, index_t ldo,
                                                 index_t n) {
  using Y = Ymm<T>;
  using V = typename Y::V;
  constexpr index_t W = fused_width<T>();
  V acc[R][NV];
#pragma GCC unroll 3
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = Y::zero();
#pragma GCC unroll 2
  for (index_t k = 0; k < G; ++k) {
    V x[R];
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r) x[r] = Y::bcast(a + r * lda + k);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const V w = Y::load(pv + v * pstride + k * W);
#pragma GCC unroll 3
      for (int r = 0; r < R; ++r) acc[r][v] = Y::fma(x[r], w, acc[r][v]);
    }
  }
  if (n == NV * W) {
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) Y::storeu(out + r * ldo + v * W, acc[r][v]);
  } else {  // a narrow block: only its n units, so no lane spills past the tile
    alignas(32) T buf[R * NV * W];
#pragma GCC unroll 3
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) Y::storeu(buf + (r * NV + v) * W, acc[r][v]);
    for (int r = 0; r < R; ++r)
      std::memcpy(out + r * ldo, buf + r * NV * W, size_t(n) * sizeof(T));
  }
}

template <typename T, int R>
NN_TARGET_AVX2 NN_LSTM_INLINE void bwd_rows_nv(int nv, const T* pv, index_t pstride, index_t G,
                                               const T* a, index_t lda, T* out, index_t ldo,
                                               index_t n) {
  switch (nv) {
    case 4: bwd_rows_avx2<T, R, 4>(pv, pstride, G, a, lda, out, ldo, n); break;
    case 3: bwd_rows_avx2<T, R, 3>(pv, pstride, G, a, lda, out, ldo, n); break;
    case 2: bwd_rows_avx2<T, R, 2>(pv, pstride, G, a, lda, out, ldo, n); break;
    default: bwd_rows_avx2<T, R, 1>(pv, pstride, G, a, lda, out, ldo, n); break;
  }
}

// dh rows [b, b1) x the tile's units [j0, j1) (j0 a multiple of W) = dz rows @
// recurrent_kernel^T, blocks of 4 W units outermost, then row tiles; dz and dh point at row b.
template <typename T>
NN_TARGET_AVX2 NN_LSTM_INLINE void bwd_products_avx2(const T* panels, index_t G, const T* dz,
                                                     index_t b, index_t b1, index_t j0,
                                                     index_t j1, T* dh, index_t H) {
  constexpr index_t W = fused_width<T>();
  const index_t pstride = G * W;
  for (index_t u = j0; u < j1; u += 4 * W) {
    const index_t n = std::min(4 * W, j1 - u);
    const int nv = int((n + W - 1) / W);
    const T* pv = panels + (u / W) * pstride;
    index_t r = b;
    for (; r + 3 <= b1; r += 3)
      bwd_rows_nv<T, 3>(nv, pv, pstride, G, dz + (r - b) * G, G, dh + (r - b) * H + u, H, n);
    if (b1 - r == 2)
      bwd_rows_nv<T, 2>(nv, pv, pstride, G, dz + (r - b) * G, G, dh + (r - b) * H + u, H, n);
    if (b1 - r == 1)
      bwd_rows_nv<T, 1>(nv, pv, pstride, G, dz + (r - b) * G, G, dh + (r - b) * H + u, H, n);
  }
}

NN_TARGET_AVX2 void bwd_products(const float* panels, index_t G, const float* dz, index_t b,
                                 index_t b1, index_t j0, index_t j1, float* dh, index_t H) {
  bwd_products_avx2(panels, G, dz, b, b1, j0, j1, dh, H);
}
NN_TARGET_AVX2 void bwd_products(const double* panels, index_t G, const double* dz, index_t b,
                                 index_t b1, index_t j0, index_t j1, double* dh, index_t H) {
  bwd_products_avx2(panels, G, dz, b, b1, j0, j1, dh, H);
}
#endif

// Whether lstm_forward uses the fused products (the CPU allows them and B is above the row-
// product range): by B and the CPU alone, so the same arithmetic for any thread grid.
bool fused_forward(index_t B) {
#if NN_LSTM_X86
  return B > kLstmGemvMaxBatch && family_isa(Family::lstm) != Isa::ref;
#else
  (void)B;
  return false;
#endif
}

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
  const index_t nr = gemm_ukernel<T>().nr;
  const Grid grid = make_grid(B, H, nr, serial);
  const bool gemv = B <= kLstmGemvMaxBatch;  // by B alone: the same arithmetic for any grid
  // The fused products (likewise by B and the CPU alone) read their own gate-interleaved panels.
  const bool fused = fused_forward(B);
  const Scratch<T> panels = fused ? pack_fused_panels(in.recurrent_kernel, H) : Scratch<T>(1);
  const bool gemm_step = !gemv && !fused;
  Scratch<T> rperm(grid.pu > 1 && gemm_step ? size_t(H * G) : 1);
  const T* rsrc = in.recurrent_kernel;
  if (grid.pu > 1 && gemm_step) {
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
      if (fused) {  // zr as below, from h_k in place and the panels
#if NN_LSTM_X86
        fused_products(panels.get(), H, a_k, lda, tl.b0, tl.b1, tl.j0, tl.j1,
                       zr.get() + tl.b0 * G, G);
#endif
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
  const Grid grid = make_grid(B, H, nr, serial);
  // recurrent_kernel^T: packed for the GEMM, or plainly transposed (G, H) for the row products.
  const bool gemv = B <= kLstmGemvMaxBatch;
  // The fused products (AVX2) read their own panels of recurrent_kernel^T, dz_k in place.
  const bool fused = fused_forward(B);
  const Scratch<T> panels = fused ? pack_bwd_panels(in.recurrent_kernel, H) : Scratch<T>(1);
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
#if NN_LSTM_X86
          bwd_products(panels.get(), G, s.dz + tl.b0 * G, tl.b0, tl.b1, tl.j0, tl.j1,
                       dh0 + tl.b0 * H, H);
#endif
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
