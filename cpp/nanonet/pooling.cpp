// Global average / max pooling over time; the contract is in pooling.hpp.
#include "nanonet/pooling.hpp"
#include "nanonet/vecmath.hpp"

#include <algorithm>

#include <cstring>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#include <type_traits>

namespace nanonet {

namespace {

constexpr index_t kPoolParallelWork = index_t(1) << 15;  // elements of x below which: 1 thread

inline index_t count_steps(const bool* mask_b, index_t T) {
  if (!mask_b) return T;
  index_t c = 0;
  for (index_t t = 0; t < T; ++t) c += mask_b[t] ? 1 : 0;
  return c;
}

inline bool step_on(const bool* mask, index_t b, index_t t, index_t T) {
  return !mask || mask[b * T + t];
}

// Whether v replaces the current best (first unmasked step, larger, or the first NaN).
template <typename S>
inline bool max_takes(S v, S best, std::int64_t arg) {
  return arg < 0 || v > best || (v != v && best == best);
}

// Average over the unmasked steps for features [f0, f1) of row b.
template <typename S>
void avg_row_block(S* y, const S* x, const bool* mask, index_t b, index_t T, index_t F,
                   index_t f0, index_t f1) {
  double acc[kPoolFeatureBlock];
  const index_t w = f1 - f0;
  for (index_t j = 0; j < w; ++j) acc[j] = 0.0;
  for (index_t t = 0; t < T; ++t) {
    if (!step_on(mask, b, t, T)) continue;
    const S* x_bt = x + (b * T + t) * F + f0;
    for (index_t j = 0; j < w; ++j) acc[j] += double(x_bt[j]);
  }
  const index_t c = count_steps(mask ? mask + b * T : nullptr, T);
  S* y_b = y + b * F + f0;
  for (index_t j = 0; j < w; ++j) y_b[j] = c > 0 ? S(acc[j] / double(c)) : S(0);
}

// Max over the unmasked steps for features [f0, f1) of row b.
template <typename S>
void max_row_block(S* y, std::int64_t* argmax, const S* x, const bool* mask, index_t b,
                   index_t T, index_t F, index_t f0, index_t f1) {
  S best[kPoolFeatureBlock];
  std::int64_t arg[kPoolFeatureBlock];
  const index_t w = f1 - f0;
  for (index_t j = 0; j < w; ++j) {
    best[j] = S(0);
    arg[j] = -1;
  }
  for (index_t t = 0; t < T; ++t) {
    if (!step_on(mask, b, t, T)) continue;
    const S* x_bt = x + (b * T + t) * F + f0;
    for (index_t j = 0; j < w; ++j) {
      if (max_takes(x_bt[j], best[j], arg[j])) {
        best[j] = x_bt[j];
        arg[j] = t;
      }
    }
  }
  for (index_t j = 0; j < w; ++j) {
    y[b * F + f0 + j] = best[j];
    argmax[b * F + f0 + j] = arg[j];
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// global_avg_pool1d

template <typename S>
void global_avg_pool1d_forward(S* y, const S* x, const bool* mask, index_t B, index_t T,
                               index_t F) {
  const index_t nfb = (F + kPoolFeatureBlock - 1) / kPoolFeatureBlock;
  const bool par = B * T * F >= kPoolParallelWork;
  // One task per (row b, feature block fb).
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t task = 0; task < B * nfb; ++task) {
    const index_t b = task / nfb, fb = task % nfb;
    const index_t f0 = fb * kPoolFeatureBlock;
    avg_row_block(y, x, mask, b, T, F, f0, std::min(F, f0 + kPoolFeatureBlock));
  }
}

template <typename S>
void global_avg_pool1d_forward_ref(S* y, const S* x, const bool* mask, index_t B, index_t T,
                                   index_t F) {
  for (index_t b = 0; b < B; ++b) {
    const index_t c = count_steps(mask ? mask + b * T : nullptr, T);
    for (index_t f = 0; f < F; ++f) {
      double s = 0.0;
      for (index_t t = 0; t < T; ++t)
        if (step_on(mask, b, t, T)) s += double(x[(b * T + t) * F + f]);
      y[b * F + f] = c > 0 ? S(s / double(c)) : S(0);
    }
  }
}

template <typename S>
void global_avg_pool1d_backward(S* dx, const S* dy, const bool* mask, index_t B, index_t T,
                                index_t F) {
  const bool par = B * T * F >= kPoolParallelWork;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < B; ++b) {
    const index_t c = count_steps(mask ? mask + b * T : nullptr, T);
    const S inv_c = c > 0 ? S(1) / S(c) : S(0);
    const S* dy_b = dy + b * F;
    for (index_t t = 0; t < T; ++t) {
      S* dx_bt = dx + (b * T + t) * F;
      if (step_on(mask, b, t, T)) {
        // y = sum_t x_t / c
        for (index_t f = 0; f < F; ++f) dx_bt[f] = dy_b[f] * inv_c;
      } else {
        for (index_t f = 0; f < F; ++f) dx_bt[f] = S(0);
      }
    }
  }
}

template <typename S>
void global_avg_pool1d_backward_ref(S* dx, const S* dy, const bool* mask, index_t B, index_t T,
                                    index_t F) {
  for (index_t b = 0; b < B; ++b) {
    const index_t c = count_steps(mask ? mask + b * T : nullptr, T);
    for (index_t t = 0; t < T; ++t)
      for (index_t f = 0; f < F; ++f)
        dx[(b * T + t) * F + f] =
            (c > 0 && step_on(mask, b, t, T)) ? dy[b * F + f] * (S(1) / S(c)) : S(0);
  }
}

// ---------------------------------------------------------------------------------------------
// global_max_pool1d

template <typename S>
void global_max_pool1d_forward(S* y, std::int64_t* argmax, const S* x, const bool* mask,
                               index_t B, index_t T, index_t F) {
  const index_t nfb = (F + kPoolFeatureBlock - 1) / kPoolFeatureBlock;
  const bool par = B * T * F >= kPoolParallelWork;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t task = 0; task < B * nfb; ++task) {
    const index_t b = task / nfb, fb = task % nfb;
    const index_t f0 = fb * kPoolFeatureBlock;
    max_row_block(y, argmax, x, mask, b, T, F, f0, std::min(F, f0 + kPoolFeatureBlock));
  }
}

template <typename S>
void global_max_pool1d_forward_ref(S* y, std::int64_t* argmax, const S* x, const bool* mask,
                                   index_t B, index_t T, index_t F) {
  for (index_t b = 0; b < B; ++b)
    for (index_t f = 0; f < F; ++f) {
      S best = S(0);
      std::int64_t arg = -1;
      for (index_t t = 0; t < T; ++t) {
        if (!step_on(mask, b, t, T)) continue;
        const S v = x[(b * T + t) * F + f];
        if (max_takes(v, best, arg)) {
          best = v;
          arg = t;
        }
      }
      y[b * F + f] = best;
      argmax[b * F + f] = arg;
    }
}

template <typename S>
void global_max_pool1d_backward(S* dx, const S* dy, const std::int64_t* argmax, index_t B,
                                index_t T, index_t F) {
  const bool par = B * T * F >= kPoolParallelWork;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (par)
  for (index_t b = 0; b < B; ++b) {
    S* dx_b = dx + b * T * F;
    std::fill(dx_b, dx_b + T * F, S(0));
    for (index_t f = 0; f < F; ++f) {
      const std::int64_t t = argmax[b * F + f];
      if (t >= 0) dx_b[t * F + f] = dy[b * F + f];
    }
  }
}

template <typename S>
void global_max_pool1d_backward_ref(S* dx, const S* dy, const std::int64_t* argmax, index_t B,
                                    index_t T, index_t F) {
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t f = 0; f < F; ++f)
        dx[(b * T + t) * F + f] = argmax[b * F + f] == t ? dy[b * F + f] : S(0);
}

// ---------------------------------------------------------------------------------------------
// windowed pooling 2-D

namespace {

// The in-image part [i0, i1) x [j0, j1) of the window of output (oh, ow).
struct Window {
  index_t i0, i1, j0, j1;
  index_t count() const { return std::max<index_t>(0, i1 - i0) * std::max<index_t>(0, j1 - j0); }
};

inline Window window_of(const Pool2DDims& d, index_t oh, index_t ow) {
  const index_t h0 = oh * d.SH - d.PT, w0 = ow * d.SW - d.PL;
  return {std::max<index_t>(h0, 0), std::min(h0 + d.PH, d.H), std::max<index_t>(w0, 0),
          std::min(w0 + d.PW, d.W)};
}

inline bool pool_parallel(const Pool2DDims& d) {
  return d.B * d.OH * d.OW * d.C * d.PH * d.PW >= kPoolParallelWork;
}

}  // namespace

namespace {

// The max of one window over channels [c0, c0 + kPoolChannelBlock), in registers: best (and,
// when WithArg, the position of the first max) per channel, taken branch-free on GCC vector
// extensions (this file builds at -O2, whose vectoriser leaves such loops scalar). The position
// is carried as an S (exact: the caller keeps H*W below 2^24), so the select is all one width.
// The window is not empty.
#if defined(__GNUC__) || defined(__clang__)
template <typename S>
struct PoolVec {  // 16-byte vectors: GCC lowers wider ones element by element on the baseline
  typedef S V __attribute__((vector_size(16)));
  typedef std::conditional_t<sizeof(S) == 4, std::int32_t, std::int64_t> U;
  typedef U I __attribute__((vector_size(16)));
  static constexpr index_t n = 16 / sizeof(S);
  // NaN lanes, by the bits (a float compare of v with itself is lowered lane by lane)
  static I nan_lanes(const V& v) {
    const U abs_mask = sizeof(S) == 4 ? U(0x7fffffff) : U(0x7fffffffffffffffLL);
    const U inf = sizeof(S) == 4 ? U(0x7f800000) : U(0x7ff0000000000000LL);
    return ((I)v & abs_mask) > inf;
  }
};

template <typename S, bool WithArg>
inline void max_window_block(S* y_p, std::int64_t* a_p, const S* x_b, const Pool2DDims& d,
                             const Window& w) {
  using PV = PoolVec<S>;
  using V = typename PV::V;
  using I = typename PV::I;
  constexpr index_t NV = kPoolChannelBlock / PV::n;
  V best[NV], arg[NV];
  const S* x_0 = x_b + (w.i0 * d.W + w.j0) * d.C;
  for (index_t u = 0; u < NV; ++u) {
    std::memcpy(&best[u], x_0 + u * PV::n, sizeof(V));
    arg[u] = V{} + S(w.i0 * d.W + w.j0);
  }
  for (index_t ih = w.i0; ih < w.i1; ++ih)
    for (index_t iw = w.j0; iw < w.j1; ++iw) {
      if (ih == w.i0 && iw == w.j0) continue;
      const S* x_p = x_b + (ih * d.W + iw) * d.C;
      const V pos = V{} + S(ih * d.W + iw);
      for (index_t u = 0; u < NV; ++u) {
        V v;
        std::memcpy(&v, x_p + u * PV::n, sizeof v);
        // max_takes: larger, or the first NaN
        const I take = (I)(v > best[u]) | (PV::nan_lanes(v) & ~PV::nan_lanes(best[u]));
        best[u] = (V)(((I)v & take) | ((I)best[u] & ~take));
        if (WithArg) arg[u] = (V)(((I)pos & take) | ((I)arg[u] & ~take));
      }
    }
  for (index_t u = 0; u < NV; ++u) {
    std::memcpy(y_p + u * PV::n, &best[u], sizeof(V));
    if (WithArg)
      for (index_t j = 0; j < PV::n; ++j) a_p[u * PV::n + j] = std::int64_t(arg[u][j]);
  }
}
#define NN_POOL_BLOCKS 1
#else
#define NN_POOL_BLOCKS 0
#endif

}  // namespace

namespace {

// The max of one window for channels [c0, C), one at a time (the channels after the register
// blocks, or all of them).
template <typename S>
inline void max_window_channels(S* y_p, std::int64_t* a_p, const S* x_b, const Pool2DDims& d,
                                const Window& w, index_t c0) {
  for (index_t c = c0; c < d.C; ++c) {
    S best = S(0);
    std::int64_t arg = -1;
    for (index_t ih = w.i0; ih < w.i1; ++ih)
      for (index_t iw = w.j0; iw < w.j1; ++iw) {
        const S v = x_b[(ih * d.W + iw) * d.C + c];
        if (max_takes(v, best, arg)) {
          best = v;
          arg = ih * d.W + iw;
        }
      }
    y_p[c] = best;
    if (a_p) a_p[c] = arg;
  }
}

// One output row (image b, row oh) of max pooling: 8-channel blocks in registers, the rest
// channel by channel.
template <typename S>
void max_pool_rows(S* y, std::int64_t* argmax, const S* x, const Pool2DDims& d, index_t row) {
  const index_t b = row / d.OH, oh = row % d.OH;
  const S* x_b = x + b * d.H * d.W * d.C;
  for (index_t ow = 0; ow < d.OW; ++ow) {
    const Window w = window_of(d, oh, ow);
    S* y_p = y + (row * d.OW + ow) * d.C;
    std::int64_t* a_p = argmax ? argmax + (row * d.OW + ow) * d.C : nullptr;
    index_t c0 = 0;
#if NN_POOL_BLOCKS
    if (w.count() > 0 && d.H * d.W < (index_t(1) << 24)) {
      // whole channel blocks in registers, the rest below
      for (; c0 + kPoolChannelBlock <= d.C; c0 += kPoolChannelBlock) {
        if (a_p)
          max_window_block<S, true>(y_p + c0, a_p + c0, x_b + c0, d, w);
        else
          max_window_block<S, false>(y_p + c0, nullptr, x_b + c0, d, w);
      }
    }
#endif
    max_window_channels(y_p, a_p, x_b, d, w, c0);
  }
}

#if NN_POOL_BLOCKS && defined(NN_TARGET_V4)
// float under AVX-512, in intrinsics (GCC's vector extensions lowered the NaN test of 64-byte
// vectors lane by lane): a block of CB channels, 16 a vector, the same rule as the block above
// (larger, or the first NaN), the position kept as int32 and widened on the store.
template <bool WithArg, index_t CB>
NN_TARGET_V4 inline __attribute__((always_inline)) void max_window_block_v4(
    float* y_p, std::int64_t* a_p, const float* x_b, const Pool2DDims& d, const Window& w) {
  constexpr index_t NV = CB / 16;
  __m512 best[NV];
  __m512i arg[NV];
  const index_t p0 = w.i0 * d.W + w.j0;
  for (index_t u = 0; u < NV; ++u) {
    best[u] = _mm512_loadu_ps(x_b + p0 * d.C + u * 16);
    arg[u] = _mm512_set1_epi32(int(p0));
  }
  for (index_t ih = w.i0; ih < w.i1; ++ih)
    for (index_t iw = w.j0; iw < w.j1; ++iw) {
      const index_t p = ih * d.W + iw;
      if (p == p0) continue;
      const __m512i pos = _mm512_set1_epi32(int(p));
      for (index_t u = 0; u < NV; ++u) {
        const __m512 v = _mm512_loadu_ps(x_b + p * d.C + u * 16);
        const __mmask16 nan_v = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        const __mmask16 nan_best = _mm512_cmp_ps_mask(best[u], best[u], _CMP_UNORD_Q);
        const __mmask16 take = _mm512_cmp_ps_mask(v, best[u], _CMP_GT_OQ) | (nan_v & ~nan_best);
        best[u] = _mm512_mask_mov_ps(best[u], take, v);
        if (WithArg) arg[u] = _mm512_mask_mov_epi32(arg[u], take, pos);
      }
    }
  for (index_t u = 0; u < NV; ++u) {
    _mm512_storeu_ps(y_p + u * 16, best[u]);
    if (WithArg) {
      _mm512_storeu_si512(a_p + u * 16, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(arg[u])));
      _mm512_storeu_si512(a_p + u * 16 + 8,
                          _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(arg[u], 1)));
    }
  }
}

// the row loop of max_pool_rows with 32-channel blocks, then 16, then channel by channel
NN_TARGET_V4 void max_pool_rows_v4(float* y, std::int64_t* argmax, const float* x,
                                   const Pool2DDims& d, index_t row) {
  const index_t b = row / d.OH, oh = row % d.OH;
  const float* x_b = x + b * d.H * d.W * d.C;
  for (index_t ow = 0; ow < d.OW; ++ow) {
    const Window w = window_of(d, oh, ow);
    float* y_p = y + (row * d.OW + ow) * d.C;
    std::int64_t* a_p = argmax ? argmax + (row * d.OW + ow) * d.C : nullptr;
    index_t c0 = 0;
    if (w.count() > 0) {
      for (; c0 + 32 <= d.C; c0 += 32) {
        if (a_p)
          max_window_block_v4<true, 32>(y_p + c0, a_p + c0, x_b + c0, d, w);
        else
          max_window_block_v4<false, 32>(y_p + c0, nullptr, x_b + c0, d, w);
      }
      for (; c0 + 16 <= d.C; c0 += 16) {
        if (a_p)
          max_window_block_v4<true, 16>(y_p + c0, a_p + c0, x_b + c0, d, w);
        else
          max_window_block_v4<false, 16>(y_p + c0, nullptr, x_b + c0, d, w);
      }
    }
    max_window_channels(y_p, a_p, x_b, d, w, c0);
  }
}
#endif

template <typename S>
void max_pool_row_dispatch(S* y, std::int64_t* argmax, const S* x, const Pool2DDims& d,
                           index_t row, bool wide) {
#if NN_POOL_BLOCKS && defined(NN_TARGET_V4)
  if constexpr (std::is_same_v<S, float>) {
    if (wide && d.H * d.W < (index_t(1) << 31)) return max_pool_rows_v4(y, argmax, x, d, row);
  }
#endif
  max_pool_rows(y, argmax, x, d, row);
}

}  // namespace

template <typename S>
void max_pool2d_forward(S* y, std::int64_t* argmax, const S* x, const Pool2DDims& d) {
  const bool wide = family_isa(Family::vecmath) == Isa::avx512;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (pool_parallel(d))
  for (index_t row = 0; row < d.B * d.OH; ++row) max_pool_row_dispatch(y, argmax, x, d, row, wide);
}

template <typename S>
void max_pool2d_backward(S* dx, const S* dy, const std::int64_t* argmax, const Pool2DDims& d) {
  const index_t img = d.H * d.W * d.C, out = d.OH * d.OW * d.C;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (pool_parallel(d))
  for (index_t b = 0; b < d.B; ++b) {
    S* dx_b = dx + b * img;
    std::fill(dx_b, dx_b + img, S(0));
    // pixel by pixel, channel inner: no division per element (i % C was a third of this loop)
    const std::int64_t* a_b = argmax + b * out;
    const S* dy_b = dy + b * out;
    for (index_t p = 0; p < d.OH * d.OW; ++p) {
      const std::int64_t* a_p = a_b + p * d.C;
      const S* dy_p = dy_b + p * d.C;
      for (index_t c = 0; c < d.C; ++c) {
        const std::int64_t a = a_p[c];
        if (a >= 0) dx_b[a * d.C + c] += dy_p[c];
      }
    }
  }
}

template <typename S>
void avg_pool2d_forward(S* y, const S* x, const Pool2DDims& d) {
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (pool_parallel(d))
  for (index_t row = 0; row < d.B * d.OH; ++row) {
    const index_t b = row / d.OH, oh = row % d.OH;
    for (index_t ow = 0; ow < d.OW; ++ow) {
      const Window w = window_of(d, oh, ow);
      const index_t n = w.count();
      S* y_p = y + (row * d.OW + ow) * d.C;
      std::fill(y_p, y_p + d.C, S(0));
      for (index_t ih = w.i0; ih < w.i1; ++ih)
        for (index_t iw = w.j0; iw < w.j1; ++iw) {
          const S* x_p = x + ((b * d.H + ih) * d.W + iw) * d.C;
          for (index_t c = 0; c < d.C; ++c) y_p[c] += x_p[c];
        }
      const S inv = n > 0 ? S(1) / S(n) : S(0);
      for (index_t c = 0; c < d.C; ++c) y_p[c] *= inv;
    }
  }
}

template <typename S>
void avg_pool2d_backward(S* dx, const S* dy, const Pool2DDims& d) {
  const index_t img = d.H * d.W * d.C;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (pool_parallel(d))
  for (index_t b = 0; b < d.B; ++b) {
    S* dx_b = dx + b * img;
    std::fill(dx_b, dx_b + img, S(0));
    for (index_t oh = 0; oh < d.OH; ++oh)
      for (index_t ow = 0; ow < d.OW; ++ow) {
        const Window w = window_of(d, oh, ow);
        const index_t n = w.count();
        if (n == 0) continue;
        const S inv = S(1) / S(n);
        const S* dy_p = dy + ((b * d.OH + oh) * d.OW + ow) * d.C;
        // y = sum over the window / n
        for (index_t ih = w.i0; ih < w.i1; ++ih)
          for (index_t iw = w.j0; iw < w.j1; ++iw) {
            S* dx_p = dx_b + (ih * d.W + iw) * d.C;
            for (index_t c = 0; c < d.C; ++c) dx_p[c] += dy_p[c] * inv;
          }
      }
  }
}

// ---------------------------------------------------------------------------------------------
// instantiations

#define NANONET_POOL_INSTANTIATE(S)                                                              \
  template void global_avg_pool1d_forward<S>(S*, const S*, const bool*, index_t, index_t,       \
                                             index_t);                                           \
  template void global_avg_pool1d_forward_ref<S>(S*, const S*, const bool*, index_t, index_t,   \
                                                 index_t);                                       \
  template void global_avg_pool1d_backward<S>(S*, const S*, const bool*, index_t, index_t,      \
                                              index_t);                                          \
  template void global_avg_pool1d_backward_ref<S>(S*, const S*, const bool*, index_t, index_t,  \
                                                  index_t);                                      \
  template void global_max_pool1d_forward<S>(S*, std::int64_t*, const S*, const bool*, index_t, \
                                             index_t, index_t);                                  \
  template void global_max_pool1d_forward_ref<S>(S*, std::int64_t*, const S*, const bool*,      \
                                                 index_t, index_t, index_t);                     \
  template void global_max_pool1d_backward<S>(S*, const S*, const std::int64_t*, index_t,       \
                                              index_t, index_t);                                 \
  template void global_max_pool1d_backward_ref<S>(S*, const S*, const std::int64_t*, index_t,   \
                                                  index_t, index_t);

NANONET_POOL_INSTANTIATE(float)
NANONET_POOL_INSTANTIATE(double)
#undef NANONET_POOL_INSTANTIATE

#define NANONET_POOL2D_INSTANTIATE(S)                                                            \
  template void max_pool2d_forward<S>(S*, std::int64_t*, const S*, const Pool2DDims&);          \
  template void max_pool2d_backward<S>(S*, const S*, const std::int64_t*, const Pool2DDims&);   \
  template void avg_pool2d_forward<S>(S*, const S*, const Pool2DDims&);                         \
  template void avg_pool2d_backward<S>(S*, const S*, const Pool2DDims&);

NANONET_POOL2D_INSTANTIATE(float)
NANONET_POOL2D_INSTANTIATE(double)
#undef NANONET_POOL2D_INSTANTIATE

}  // namespace nanonet
