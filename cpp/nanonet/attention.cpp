#include "nanonet/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "nanonet/vecmath.hpp"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
// Everything a clone calls is inlined into it: a helper left out of line would be compiled once
// for the baseline ISA only (SSE2) and the clones would gain nothing.
#define NN_ATTN_INLINE inline __attribute__((always_inline))
#else
#define NN_ATTN_INLINE inline
#endif

namespace nanonet {

namespace {

constexpr double kAttnParallelFlops = 2e6;  // below this a call stays on the calling thread

template <typename S>
struct Args {
  const S* q;
  const S* k;
  const S* v;
  const bool* mask;
  index_t mask_rows;
  bool causal;
  S scale;
  index_t B, H, Tq, Tk, D, Dv;
  AttnStrides qs, ks, vs;  // element strides of q, k, v (attention.hpp)
};

inline AttnStrides contiguous_strides(index_t H, index_t T, index_t D) {
  return AttnStrides{H * T * D, T * D, D};
}

// Row t of pair bh (= b H + h) of an input with strides st.
template <typename S>
NN_ATTN_INLINE const S* row_of(const S* base, const AttnStrides& st, index_t bh, index_t H,
                               index_t t) {
  return base + (bh / H) * st.b + (bh % H) * st.h + t * st.t;
}

// ---------------------------------------------------------------------------------------------
// Small dense products on tiles. C (M, N) = or += A (M, K) * Bm (K, N); C and Bm row-major with
// leading dimensions ldc, ldb; A(i, p) = A[i * ars + p * aps], so A may be a transposed view.
// Blocks of MB rows x NB = two VB-byte vectors of columns keep their 2 MB sums in registers
// (GCC/Clang vector extensions; VB = 64 in the AVX-512 clones: 8 rows, 16 zmm; 32 in the others:
// 4 rows, 8 ymm in the AVX2 one, pairs of xmm in the baseline one); each step broadcasts one A
// element per row and loads one row of B.
// The order of every sum is p = 0 .. K-1, as in the scalar edge loops. Edges take plain loops.
#if defined(__GNUC__) || defined(__clang__)
#define NN_ATTN_VEC 1
template <typename S, int VB>
struct Vec {
  typedef S type __attribute__((vector_size(VB)));
};
// By reference, never by value: a 32-byte vector argument or return value would change the ABI
// of the baseline clone.
template <typename VT, typename S>
NN_ATTN_INLINE void loadu(VT& v, const S* p) {
  std::memcpy(&v, p, sizeof v);
}
template <typename VT, typename S>
NN_ATTN_INLINE void storeu(S* p, const VT& v) {
  std::memcpy(p, &v, sizeof v);
}
#else
#define NN_ATTN_VEC 0
#endif

template <int VB, typename S>
NN_ATTN_INLINE void mm_nn(S* C, index_t ldc, const S* A, index_t ars, index_t aps, const S* Bm,
                          index_t ldb, index_t M, index_t N, index_t K, bool accumulate) {
  constexpr index_t MB = VB == 64 ? 8 : 4;
  constexpr index_t W = VB / sizeof(S);  // lanes per vector
  constexpr index_t NB = 2 * W;
  index_t i = 0;
  for (; i + MB <= M; i += MB) {
    index_t j = 0;
#if NN_ATTN_VEC
    using VT = typename Vec<S, VB>::type;
    for (; j + NB <= N; j += NB) {
      VT c0[MB], c1[MB];
      for (index_t r = 0; r < MB; ++r) {
        if (accumulate) {
          loadu(c0[r], C + (i + r) * ldc + j);
          loadu(c1[r], C + (i + r) * ldc + j + W);
        } else {
          c0[r] = VT{};
          c1[r] = VT{};
        }
      }
      const S* a_0 = A + i * ars;
      for (index_t p = 0; p < K; ++p) {
        VT b0, b1;
        loadu(b0, Bm + p * ldb + j);
        loadu(b1, Bm + p * ldb + j + W);
        for (index_t r = 0; r < MB; ++r) {
          const S a = a_0[r * ars + p * aps];
          c0[r] += a * b0;
          c1[r] += a * b1;
        }
      }
      for (index_t r = 0; r < MB; ++r) {
        storeu(C + (i + r) * ldc + j, c0[r]);
        storeu(C + (i + r) * ldc + j + W, c1[r]);
      }
    }
    // One more vector of columns when at least W are left (short key tiles, e.g. Tk = 24, would
    // otherwise run a third of their columns in the scalar edge loop).
    for (; j + W <= N; j += W) {
      VT c0[MB];
      for (index_t r = 0; r < MB; ++r) {
        if (accumulate)
          loadu(c0[r], C + (i + r) * ldc + j);
        else
          c0[r] = VT{};
      }
      const S* a_0 = A + i * ars;
      for (index_t p = 0; p < K; ++p) {
        VT b0;
        loadu(b0, Bm + p * ldb + j);
        for (index_t r = 0; r < MB; ++r) c0[r] += a_0[r * ars + p * aps] * b0;
      }
      for (index_t r = 0; r < MB; ++r) storeu(C + (i + r) * ldc + j, c0[r]);
    }
    // The last N - j < W columns (e.g. T = 100 keys: 4): one vector too, over a zero-padded
    // copy of B's tail taken KT rows at a time; C's tail goes through a buffer. Every sum keeps
    // its order p = 0 .. K-1.
    if (j < N) {
      constexpr index_t KT = 64;
      const index_t nt = N - j;
      VT c0[MB];
      for (index_t r = 0; r < MB; ++r) {
        S t[W] = {};
        if (accumulate) std::memcpy(t, C + (i + r) * ldc + j, size_t(nt) * sizeof(S));
        loadu(c0[r], t);
      }
      const S* a_0 = A + i * ars;
      for (index_t p0 = 0; p0 < K; p0 += KT) {
        const index_t kt = std::min(KT, K - p0);
        S bt[KT * W];
        for (index_t p = 0; p < kt; ++p) {
          const S* b_p = Bm + (p0 + p) * ldb + j;
          for (index_t x = 0; x < W; ++x) bt[p * W + x] = x < nt ? b_p[x] : S(0);
        }
        for (index_t p = 0; p < kt; ++p) {
          VT b0;
          loadu(b0, bt + p * W);
          for (index_t r = 0; r < MB; ++r) c0[r] += a_0[r * ars + (p0 + p) * aps] * b0;
        }
      }
      for (index_t r = 0; r < MB; ++r) {
        S t[W];
        storeu(t, c0[r]);
        std::memcpy(C + (i + r) * ldc + j, t, size_t(nt) * sizeof(S));
      }
    }
#else
    if (j < N) {
      for (index_t r = 0; r < MB; ++r) {
        S* c_r = C + (i + r) * ldc;
        if (!accumulate)
          for (index_t x = j; x < N; ++x) c_r[x] = S(0);
        for (index_t p = 0; p < K; ++p) {
          const S a = A[(i + r) * ars + p * aps];
          const S* b_p = Bm + p * ldb;
          for (index_t x = j; x < N; ++x) c_r[x] += a * b_p[x];
        }
      }
    }
#endif
  }
  for (; i < M; ++i) {
    S* c_i = C + i * ldc;
    if (!accumulate)
      for (index_t x = 0; x < N; ++x) c_i[x] = S(0);
    for (index_t p = 0; p < K; ++p) {
      const S a = A[i * ars + p * aps];
      const S* b_p = Bm + p * ldb;
      for (index_t x = 0; x < N; ++x) c_i[x] += a * b_p[x];
    }
  }
}

// valid_ij for query row i, keys j0 .. j0 + nj - 1, written as 0/1 bytes into ok; returns ok, or
// nullptr when every one of those keys is valid (no mask, and causal leaves them all visible).
template <typename S>
NN_ATTN_INLINE const bool* valid_keys(bool* ok, const Args<S>& a, index_t b, index_t i,
                                      index_t j0, index_t nj) {
  if (!a.mask && (!a.causal || j0 + nj - 1 <= i)) return nullptr;
  const bool* m = a.mask ? a.mask + (b * a.mask_rows + (a.mask_rows == 1 ? 0 : i)) * a.Tk + j0
                         : nullptr;
  for (index_t c = 0; c < nj; ++c) ok[c] = (!m || m[c]) && (!a.causal || j0 + c <= i);
  return ok;
}

// Whether valid_keys gives every query row the same answer (no causal cut; no mask or one key
// mask per batch row): then a tile computes it once for all its rows.
template <typename S>
NN_ATTN_INLINE bool keys_shared(const Args<S>& a) {
  return !a.causal && (!a.mask || a.mask_rows == 1);
}

// Keys a query tile [i0, i0 + ni) may see: [0, kend).
template <typename S>
NN_ATTN_INLINE index_t key_end(const Args<S>& a, index_t i0, index_t ni) {
  return a.causal ? std::min(a.Tk, i0 + ni) : a.Tk;
}

// Row helpers on one tile row of nj scores, branch-free so they vectorise. The maxima and sums
// are vectorised reductions (NN_SIMD_MAX / NN_SIMD_SUM: a fixed order, whatever the threads).
// s_c = ok_c ? s_c * scale - sub : -inf; ok == nullptr: every key is valid.
template <typename S>
NN_ATTN_INLINE void scale_mask_row(S* s, const bool* ok, index_t nj, S scale, S sub) {
  const S neg_inf = -std::numeric_limits<S>::infinity();
  if (!ok) {
    NN_PRAGMA_SIMD
    for (index_t c = 0; c < nj; ++c) s[c] = s[c] * scale - sub;
    return;
  }
  NN_PRAGMA_SIMD
  for (index_t c = 0; c < nj; ++c) s[c] = vm::select(ok[c], s[c] * scale - sub, neg_inf);
}
template <typename S>
NN_ATTN_INLINE S row_max(const S* s, index_t nj, S init) {
  S r = init;
  NN_SIMD_MAX(r)
  for (index_t c = 0; c < nj; ++c) r = s[c] > r ? s[c] : r;
  return r;
}
// s_c = exp(s_c - mx); returns sum_c s_c
template <typename S>
NN_ATTN_INLINE S exp_row_sum(S* s, index_t nj, S mx) {
  S r = S(0);
  NN_SIMD_SUM(r)
  for (index_t c = 0; c < nj; ++c) {
    const S e = vm::exp(s[c] - mx);
    s[c] = e;
    r += e;
  }
  return r;
}

// dst (D, T) = src (T, D)^T for one (b, h) pair's keys or values (rows ld apart), cached per
// pair: the tile products then read a key tile's transpose at dst + j0 with leading dimension T.
template <typename S>
struct PairT {
  std::vector<S> data;
  index_t bh = -1;
  // src_bh: the pair's first row; rows ld apart.
  NN_ATTN_INLINE const S* get(const S* src_bh, index_t ld, index_t pair, index_t T, index_t D) {
    if (bh != pair) {
      // data holds D * T elements already (sized before the parallel region)
      for (index_t d = 0; d < D; ++d)
        for (index_t t = 0; t < T; ++t) data[d * T + t] = src_bh[t * ld + d];
      bh = pair;
    }
    return data.data();
  }
};

// ---------------------------------------------------------------------------------------------
// Forward of one query tile of one (b, h) pair. Workspace: kt (D, Tk) (the pair's keys,
// transposed once per pair), s (BQ, BK), acc (BQ, Dv), m, l, mx, alpha (BQ), ok (BK).
template <typename S>
struct FwdWork {
  PairT<S> kt;
  std::vector<S> s, acc, m, l, mx, alpha;
  std::vector<char> ok;
  FwdWork(index_t D, index_t Dv, index_t Tk)
      : s(kAttnBlockQ * kAttnBlockK), acc(kAttnBlockQ * Dv), m(kAttnBlockQ), l(kAttnBlockQ),
        mx(kAttnBlockQ), alpha(kAttnBlockQ), ok(kAttnBlockK) {
    kt.data.resize(static_cast<size_t>(D * Tk));
  }
};

template <int VB, typename S>
NN_ATTN_INLINE void forward_tile_body(S* out, S* lse, const Args<S>& a, index_t bh, index_t i0,
                                      FwdWork<S>& w) {
  const index_t D = a.D, Dv = a.Dv, Tk = a.Tk, b = bh / a.H;
  const index_t ni = std::min(kAttnBlockQ, a.Tq - i0);
  const S* q_i = row_of(a.q, a.qs, bh, a.H, i0);
  const S* kt = w.kt.get(row_of(a.k, a.ks, bh, a.H, 0), a.ks.t, bh, Tk, D);
  const S* v_bh = row_of(a.v, a.vs, bh, a.H, 0);
  const S neg_inf = -std::numeric_limits<S>::infinity();
  S* acc = w.acc.data();
  S* m = w.m.data();
  S* l = w.l.data();
  bool* ok = reinterpret_cast<bool*>(w.ok.data());
  std::fill(acc, acc + ni * Dv, S(0));
  std::fill(m, m + ni, neg_inf);
  std::fill(l, l + ni, S(0));
  const index_t kend = key_end(a, i0, ni);
  for (index_t j0 = 0; j0 < kend; j0 += kAttnBlockK) {
    const index_t nj = std::min(kAttnBlockK, kend - j0);
    // s (ni, nj) = q_i (ni, D) k_j^T (D, nj)
    mm_nn<VB>(w.s.data(), nj, q_i, a.qs.t, 1, kt + j0, Tk, ni, nj, D, false);
    // In phases over the tile's rows (not row by row), so the rows' maxima and rescale factors
    // are independent work the core overlaps, and alpha is one vector exp for all rows.
    S* mx = w.mx.data();
    S* alpha = w.alpha.data();
    const bool shared = keys_shared(a);
    const bool* tile_ok = shared ? valid_keys(ok, a, b, i0, j0, nj) : nullptr;
    for (index_t r = 0; r < ni; ++r) {
      S* s_r = w.s.data() + r * nj;
      scale_mask_row(s_r, shared ? tile_ok : valid_keys(ok, a, b, i0 + r, j0, nj), nj, a.scale,
                     S(0));
      mx[r] = row_max(s_r, nj, m[r]);
    }
    // m = -inf (nothing valid yet): alpha 0 (acc and l are 0 anyway)
    NN_PRAGMA_SIMD
    for (index_t r = 0; r < ni; ++r)
      alpha[r] = vm::select(mx[r] == neg_inf, S(0), vm::exp(m[r] - mx[r]));
    for (index_t r = 0; r < ni; ++r) {
      S* s_r = w.s.data() + r * nj;
      if (mx[r] == neg_inf) {  // nothing valid so far in this row: p = 0 in this tile
        for (index_t c = 0; c < nj; ++c) s_r[c] = S(0);
        continue;
      }
      l[r] = l[r] * alpha[r] + exp_row_sum(s_r, nj, mx[r]);
      m[r] = mx[r];
      S* acc_r = acc + r * Dv;
      const S al = alpha[r];
      NN_PRAGMA_SIMD
      for (index_t e = 0; e < Dv; ++e) acc_r[e] *= al;
    }
    // acc (ni, Dv) += p (ni, nj) v_j (nj, Dv)
    mm_nn<VB>(acc, Dv, w.s.data(), nj, 1, v_bh + j0 * a.vs.t, a.vs.t, ni, Dv, nj, true);
  }
  S* out_i = out + (bh * a.Tq + i0) * Dv;
  S* lse_i = lse + bh * a.Tq + i0;
  for (index_t r = 0; r < ni; ++r) {
    if (l[r] > S(0)) {
      const S inv = S(1) / l[r];
      for (index_t e = 0; e < Dv; ++e) out_i[r * Dv + e] = acc[r * Dv + e] * inv;
      lse_i[r] = m[r] + std::log(l[r]);
    } else {  // fully masked row
      for (index_t e = 0; e < Dv; ++e) out_i[r * Dv + e] = S(0);
      lse_i[r] = neg_inf;
    }
  }
}

NN_ISA_CLONES_VB(void, forward_tile, (float* out, float* lse, const Args<float>& a, index_t bh,
                  index_t i0, FwdWork<float>& w), (out, lse, a, bh, i0, w), forward_tile_body)
NN_ISA_CLONES_F64_VB(void, forward_tile, (double* out, double* lse, const Args<double>& a,
                     index_t bh, index_t i0, FwdWork<double>& w), (out, lse, a, bh, i0, w),
                     forward_tile_body)

// ---------------------------------------------------------------------------------------------
// Backward. One block = query tile [i0, i0 + ni) x key tile [j0, j0 + nj) of one (b, h): it
// recomputes p and ds (already multiplied by scale) into w.p and w.ds; then dkdv_block adds its
// share to dk_j and dv_j, dq_block to dq_i.
template <typename S>
struct BwdWork {
  PairT<S> kt, vt;  // the pair's keys and values, transposed once per pair
  std::vector<S> p, ds;
  std::vector<char> ok;
  BwdWork(index_t D, index_t Dv, index_t Tk)
      : p(kAttnBlockQ * kAttnBlockK), ds(kAttnBlockQ * kAttnBlockK),
        ok(2 * kAttnBlockK, 0) {  // [0, BK): valid_keys' answer; [BK, 2 BK): never written
    kt.data.resize(static_cast<size_t>(D * Tk));
    vt.data.resize(static_cast<size_t>(Dv * Tk));
  }
};

template <typename S>
struct BwdArgs {
  Args<S> a;
  const S* dout;
  AttnStrides dos;  // dout's element strides
  const S* lse;
  const S* Drow;  // D_i = dout_i . out_i, (B, H, Tq)
  S* dq;
  S* dk;
  S* dv;
};

template <int VB, typename S>
NN_ATTN_INLINE void block_p_ds(const BwdArgs<S>& g, index_t bh, index_t i0, index_t ni,
                               index_t j0, index_t nj, BwdWork<S>& w) {
  const Args<S>& a = g.a;
  const index_t D = a.D, Dv = a.Dv, Tk = a.Tk, b = bh / a.H;
  const S* q_i = row_of(a.q, a.qs, bh, a.H, i0);
  const S* do_i = row_of(g.dout, g.dos, bh, a.H, i0);
  const S* lse_i = g.lse + bh * a.Tq + i0;
  const S* D_i = g.Drow + bh * a.Tq + i0;
  const S* kt = w.kt.get(row_of(a.k, a.ks, bh, a.H, 0), a.ks.t, bh, Tk, D);
  const S* vt = w.vt.get(row_of(a.v, a.vs, bh, a.H, 0), a.vs.t, bh, Tk, Dv);
  bool* ok = reinterpret_cast<bool*>(w.ok.data());
  const S neg_inf = -std::numeric_limits<S>::infinity();
  // s = q_i k_j^T; dp = dout_i v_j^T
  mm_nn<VB>(w.p.data(), nj, q_i, a.qs.t, 1, kt + j0, Tk, ni, nj, D, false);
  mm_nn<VB>(w.ds.data(), nj, do_i, g.dos.t, 1, vt + j0, Tk, ni, nj, Dv, false);
  const bool shared = keys_shared(a);
  const bool* none = ok + kAttnBlockK;  // all false (zeros from construction), for dead rows
  const bool* tile_ok = shared ? valid_keys(ok, a, b, i0, j0, nj) : nullptr;
  for (index_t r = 0; r < ni; ++r) {
    S* p_r = w.p.data() + r * nj;
    S* ds_r = w.ds.data() + r * nj;
    const bool live = lse_i[r] != neg_inf;  // a fully masked row has p = 0
    const bool* okr = shared ? tile_ok : valid_keys(ok, a, b, i0 + r, j0, nj);
    if (!live) okr = none;
    // p = exp(scale s - lse) where valid, 0 elsewhere
    scale_mask_row(p_r, okr, nj, a.scale, live ? lse_i[r] : S(0));
    NN_PRAGMA_SIMD
    for (index_t c = 0; c < nj; ++c) p_r[c] = vm::exp(p_r[c]);
    // ds = scale * p (dp - D)
    const S Dr = D_i[r];
    NN_PRAGMA_SIMD
    for (index_t c = 0; c < nj; ++c) ds_r[c] = a.scale * (p_r[c] * (ds_r[c] - Dr));
  }
}

template <int VB, typename S>
NN_ATTN_INLINE void dkdv_block(const BwdArgs<S>& g, index_t bh, index_t i0, index_t ni,
                               index_t j0, index_t nj, BwdWork<S>& w) {
  const Args<S>& a = g.a;
  const index_t D = a.D, Dv = a.Dv;
  // dv_j (nj, Dv) += p^T (nj, ni) dout_i (ni, Dv); p^T read in place (strides 1, nj)
  mm_nn<VB>(g.dv + (bh * a.Tk + j0) * Dv, Dv, w.p.data(), 1, nj,
            row_of(g.dout, g.dos, bh, a.H, i0), g.dos.t, nj, Dv, ni, true);
  // dk_j (nj, D) += ds^T (nj, ni) q_i (ni, D)
  mm_nn<VB>(g.dk + (bh * a.Tk + j0) * D, D, w.ds.data(), 1, nj, row_of(a.q, a.qs, bh, a.H, i0),
            a.qs.t, nj, D, ni, true);
}

template <int VB, typename S>
NN_ATTN_INLINE void dq_block(const BwdArgs<S>& g, index_t bh, index_t i0, index_t ni, index_t j0,
                             index_t nj, BwdWork<S>& w) {
  const Args<S>& a = g.a;
  const index_t D = a.D;
  // dq_i (ni, D) += ds (ni, nj) k_j (nj, D)
  mm_nn<VB>(g.dq + (bh * a.Tq + i0) * D, D, w.ds.data(), nj, 1, row_of(a.k, a.ks, bh, a.H, j0),
            a.ks.t, ni, D, nj, true);
}

// mode 0: all of pair bh (dq, dk, dv); mode 1: key tile jt of pair bh (dk, dv);
// mode 2: query tile it of pair bh (dq). Every mode visits blocks in the same order per output.
template <int VB, typename S>
NN_ATTN_INLINE void backward_item_body(const BwdArgs<S>& g, int mode, index_t bh, index_t tile,
                               BwdWork<S>& w) {
  const Args<S>& a = g.a;
  const index_t Tq = a.Tq, Tk = a.Tk;
  auto visible = [&](index_t i0, index_t ni, index_t j0) { return j0 < key_end(a, i0, ni); };
  if (mode == 2) {
    const index_t i0 = tile * kAttnBlockQ, ni = std::min(kAttnBlockQ, Tq - i0);
    for (index_t j0 = 0; j0 < Tk; j0 += kAttnBlockK) {
      if (!visible(i0, ni, j0)) break;
      const index_t nj = std::min(kAttnBlockK, Tk - j0);
      block_p_ds<VB>(g, bh, i0, ni, j0, nj, w);
      dq_block<VB>(g, bh, i0, ni, j0, nj, w);
    }
    return;
  }
  const index_t j_first = mode == 1 ? tile * kAttnBlockK : 0;
  const index_t j_last = mode == 1 ? j_first + 1 : Tk;
  for (index_t j0 = j_first; j0 < j_last; j0 += kAttnBlockK) {
    const index_t nj = std::min(kAttnBlockK, Tk - j0);
    for (index_t i0 = 0; i0 < Tq; i0 += kAttnBlockQ) {
      const index_t ni = std::min(kAttnBlockQ, Tq - i0);
      if (!visible(i0, ni, j0)) continue;
      block_p_ds<VB>(g, bh, i0, ni, j0, nj, w);
      dkdv_block<VB>(g, bh, i0, ni, j0, nj, w);
      if (mode == 0) dq_block<VB>(g, bh, i0, ni, j0, nj, w);
    }
  }
}

NN_ISA_CLONES_VB(void, backward_item,
                 (const BwdArgs<float>& g, int mode, index_t bh, index_t tile, BwdWork<float>& w),
                 (g, mode, bh, tile, w), backward_item_body)
NN_ISA_CLONES_F64_VB(void, backward_item,
                     (const BwdArgs<double>& g, int mode, index_t bh, index_t tile,
                      BwdWork<double>& w), (g, mode, bh, tile, w), backward_item_body)

// Flush-to-zero for one thread's share of a call, the previous mode restored after. Masked keys
// (score -inf) and far-below-the-maximum ones give probabilities that underflow; computing
// those as subnormals took a microcode assist per lane on Intel cores (a key-masked forward ran
// 1.75x the time of an unmasked one). Flushed, they are 0 instead of below 1.2e-38 (float),
// next to a row sum of at least 1. Inputs are not touched (no denormals-are-zero).
struct FlushToZero {
#if defined(__SSE__) || defined(__x86_64__)
  unsigned saved;
  FlushToZero() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8000u); }
  ~FlushToZero() { _mm_setcsr(saved); }
#endif
};

inline int threads_for(double flops) {
  return flops >= kAttnParallelFlops ? get_num_threads() : 1;
}

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace

// ---------------------------------------------------------------------------------------------
template <typename S>
void attention_forward(S* out, S* lse, const S* q, const S* k, const S* v, const bool* mask,
                       index_t mask_rows, bool causal, S scale, index_t B, index_t H, index_t Tq,
                       index_t Tk, index_t D, index_t Dv, const AttnStrides* qkv) {
  const Args<S> a{q, k, v, mask, mask_rows, causal, scale, B, H, Tq, Tk, D, Dv,
                  qkv ? qkv[0] : contiguous_strides(H, Tq, D),
                  qkv ? qkv[1] : contiguous_strides(H, Tk, D),
                  qkv ? qkv[2] : contiguous_strides(H, Tk, Dv)};
  const index_t BH = B * H;
  const index_t nqt = (Tq + kAttnBlockQ - 1) / kAttnBlockQ;
  const index_t items = BH * nqt;
  if (Tk == 0) {  // no keys: every row is fully masked
    for (index_t i = 0; i < BH * Tq * Dv; ++i) out[i] = S(0);
    for (index_t i = 0; i < BH * Tq; ++i) lse[i] = -std::numeric_limits<S>::infinity();
    return;
  }
  const int nt = threads_for(2.0 * double(BH) * Tq * Tk * (D + Dv));
  // Workspaces are allocated here, before the parallel region: an exception (bad_alloc) must not
  // leave an OpenMP region.
  std::vector<FwdWork<S>> works;
  works.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) works.emplace_back(D, Dv, Tk);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const FlushToZero ftz;
    FwdWork<S>& w = works[static_cast<size_t>(thread_index())];
#pragma omp for schedule(static)
    for (index_t it = 0; it < items; ++it)
      forward_tile(out, lse, a, it / nqt, (it % nqt) * kAttnBlockQ, w);
  }
}

template <typename S>
void attention_backward(S* dq, S* dk, S* dv, const S* dout, const S* q, const S* k, const S* v,
                        const S* out, const S* lse, const bool* mask, index_t mask_rows,
                        bool causal, S scale, index_t B, index_t H, index_t Tq, index_t Tk,
                        index_t D, index_t Dv, const AttnStrides* qkvdo) {
  const index_t BH = B * H;
  std::fill(dq, dq + BH * Tq * D, S(0));
  std::fill(dk, dk + BH * Tk * D, S(0));
  std::fill(dv, dv + BH * Tk * Dv, S(0));
  if (Tq == 0 || Tk == 0 || BH == 0) return;
  std::vector<S> Drow(BH * Tq);
  const BwdArgs<S> g{{q, k, v, mask, mask_rows, causal, scale, B, H, Tq, Tk, D, Dv,
                      qkvdo ? qkvdo[0] : contiguous_strides(H, Tq, D),
                      qkvdo ? qkvdo[1] : contiguous_strides(H, Tk, D),
                      qkvdo ? qkvdo[2] : contiguous_strides(H, Tk, Dv)},
                     dout, qkvdo ? qkvdo[3] : contiguous_strides(H, Tq, Dv), lse, Drow.data(),
                     dq, dk, dv};
  const int nt = threads_for(4.0 * double(BH) * Tq * Tk * (D + Dv));
  const index_t nqt = (Tq + kAttnBlockQ - 1) / kAttnBlockQ;
  const index_t nkt = (Tk + kAttnBlockK - 1) / kAttnBlockK;
  const bool by_pair = BH >= nt;
  std::vector<BwdWork<S>> works;  // allocated before the parallel region, as in the forward
  works.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) works.emplace_back(D, Dv, Tk);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const FlushToZero ftz;
    // D_i = dout_i . out_i
#pragma omp for schedule(static)
    for (index_t r = 0; r < BH * Tq; ++r) {
      const S* do_r = row_of(dout, g.dos, r / Tq, H, r % Tq);
      S s = S(0);
      for (index_t e = 0; e < Dv; ++e) s += do_r[e] * out[r * Dv + e];
      Drow[r] = s;
    }
    BwdWork<S>& w = works[static_cast<size_t>(thread_index())];
    if (by_pair) {
#pragma omp for schedule(static)
      for (index_t bh = 0; bh < BH; ++bh) backward_item(g, 0, bh, 0, w);
    } else {
#pragma omp for schedule(static)
      for (index_t it = 0; it < BH * nkt; ++it) backward_item(g, 1, it / nkt, it % nkt, w);
#pragma omp for schedule(static)
      for (index_t it = 0; it < BH * nqt; ++it) backward_item(g, 2, it / nqt, it % nqt, w);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Plain serial references, one query row at a time.
template <typename S>
void attention_forward_ref(S* out, S* lse, const S* q, const S* k, const S* v, const bool* mask,
                           index_t mask_rows, bool causal, S scale, index_t B, index_t H,
                           index_t Tq, index_t Tk, index_t D, index_t Dv) {
  const S neg_inf = -std::numeric_limits<S>::infinity();
  std::vector<S> s(Tk);
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      const index_t bh = b * H + h;
      for (index_t i = 0; i < Tq; ++i) {
        const S* q_i = q + (bh * Tq + i) * D;
        const bool* m_i = mask ? mask + (b * mask_rows + (mask_rows == 1 ? 0 : i)) * Tk : nullptr;
        S mx = neg_inf;
        for (index_t j = 0; j < Tk; ++j) {
          const bool ok = (!m_i || m_i[j]) && (!causal || j <= i);
          S dot = S(0);
          for (index_t d = 0; d < D; ++d) dot += q_i[d] * k[(bh * Tk + j) * D + d];
          s[j] = ok ? dot * scale : neg_inf;
          mx = std::max(mx, s[j]);
        }
        S* out_i = out + (bh * Tq + i) * Dv;
        for (index_t e = 0; e < Dv; ++e) out_i[e] = S(0);
        if (mx == neg_inf) {
          lse[bh * Tq + i] = neg_inf;
          continue;
        }
        S l = S(0);
        for (index_t j = 0; j < Tk; ++j) l += (s[j] = std::exp(s[j] - mx));
        for (index_t j = 0; j < Tk; ++j)
          for (index_t e = 0; e < Dv; ++e) out_i[e] += s[j] / l * v[(bh * Tk + j) * Dv + e];
        lse[bh * Tq + i] = mx + std::log(l);
      }
    }
}

template <typename S>
void attention_backward_ref(S* dq, S* dk, S* dv, const S* dout, const S* q, const S* k,
                            const S* v, const S* out, const S* lse, const bool* mask,
                            index_t mask_rows, bool causal, S scale, index_t B, index_t H,
                            index_t Tq, index_t Tk, index_t D, index_t Dv) {
  const S neg_inf = -std::numeric_limits<S>::infinity();
  std::fill(dq, dq + B * H * Tq * D, S(0));
  std::fill(dk, dk + B * H * Tk * D, S(0));
  std::fill(dv, dv + B * H * Tk * Dv, S(0));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      const index_t bh = b * H + h;
      for (index_t i = 0; i < Tq; ++i) {
        const S l = lse[bh * Tq + i];
        if (l == neg_inf) continue;  // fully masked row: no gradient
        const S* q_i = q + (bh * Tq + i) * D;
        const S* do_i = dout + (bh * Tq + i) * Dv;
        const bool* m_i = mask ? mask + (b * mask_rows + (mask_rows == 1 ? 0 : i)) * Tk : nullptr;
        S Di = S(0);
        for (index_t e = 0; e < Dv; ++e) Di += do_i[e] * out[(bh * Tq + i) * Dv + e];
        for (index_t j = 0; j < Tk; ++j) {
          if (!((!m_i || m_i[j]) && (!causal || j <= i))) continue;
          const S* k_j = k + (bh * Tk + j) * D;
          const S* v_j = v + (bh * Tk + j) * Dv;
          S dot = S(0);
          for (index_t d = 0; d < D; ++d) dot += q_i[d] * k_j[d];
          const S p = std::exp(dot * scale - l);
          S dp = S(0);
          for (index_t e = 0; e < Dv; ++e) {
            dp += do_i[e] * v_j[e];
            dv[(bh * Tk + j) * Dv + e] += p * do_i[e];
          }
          const S ds = scale * p * (dp - Di);
          for (index_t d = 0; d < D; ++d) {
            dq[(bh * Tq + i) * D + d] += ds * k_j[d];
            dk[(bh * Tk + j) * D + d] += ds * q_i[d];
          }
        }
      }
    }
}

#define NN_ATTN_INSTANTIATE(S)                                                                  \
  template void attention_forward<S>(S*, S*, const S*, const S*, const S*, const bool*, index_t, \
                                     bool, S, index_t, index_t, index_t, index_t, index_t,       \
                                     index_t, const AttnStrides*);                               \
  template void attention_forward_ref<S>(S*, S*, const S*, const S*, const S*, const bool*,     \
                                         index_t, bool, S, index_t, index_t, index_t, index_t,   \
                                         index_t, index_t);                                      \
  template void attention_backward<S>(S*, S*, S*, const S*, const S*, const S*, const S*,       \
                                      const S*, const S*, const bool*, index_t, bool, S,         \
                                      index_t, index_t, index_t, index_t, index_t, index_t,      \
                                      const AttnStrides*);                                       \
  template void attention_backward_ref<S>(S*, S*, S*, const S*, const S*, const S*, const S*,   \
                                          const S*, const S*, const bool*, index_t, bool, S,     \
                                          index_t, index_t, index_t, index_t, index_t, index_t);
NN_ATTN_INSTANTIATE(float)
NN_ATTN_INSTANTIATE(double)
#undef NN_ATTN_INSTANTIATE

}  // namespace nanonet
