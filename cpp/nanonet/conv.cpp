// 2-D convolution through the packed GEMM; the contract is in conv.hpp.
#include "nanonet/conv.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "nanonet/gemm.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

namespace {

inline index_t kdim(const ConvDims& d) { return d.KH * d.KW * (d.C / d.G); }

// A 1x1, stride-1, unpadded, ungrouped conv: x itself is the (M, C) matrix A.
inline bool is_pointwise(const ConvDims& d) {
  return d.KH == 1 && d.KW == 1 && d.SH == 1 && d.SW == 1 && d.PT == 0 && d.PL == 0 &&
         d.OH == d.H && d.OW == d.W && d.G == 1;
}

// Rows per im2col tile: about kConvTileBytes of A, a multiple of 16, at least 16.
template <typename T>
index_t tile_rows(const ConvDims& d) {
  const index_t K = std::max<index_t>(kdim(d), 1);
  index_t mt = kConvTileBytes / index_t(sizeof(T)) / K;
  mt = std::max<index_t>(16, mt / 16 * 16);
  return std::min<index_t>(mt, 1024);
}

// im2col of output rows [r0, r0 + m) (flat over b, oh, ow) for group g: a_tile (m, K),
// columns ordered (kh, kw, c) like the kernel's rows.
template <typename T>
void gather_tile(T* a_tile, const T* x, const ConvDims& d, index_t g, index_t r0, index_t m) {
  const index_t Cg = d.C / d.G, K = kdim(d), P = d.OH * d.OW;
  for (index_t i = 0; i < m; ++i) {
    const index_t r = r0 + i, b = r / P, oh = (r % P) / d.OW, ow = r % d.OW;
    T* a_r = a_tile + i * K;
    for (index_t kh = 0; kh < d.KH; ++kh) {
      const index_t ih = oh * d.SH - d.PT + kh * d.DH;
      for (index_t kw = 0; kw < d.KW; ++kw) {
        const index_t iw = ow * d.SW - d.PL + kw * d.DW;
        T* a_rk = a_r + (kh * d.KW + kw) * Cg;
        if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) {
          std::fill(a_rk, a_rk + Cg, T(0));
        } else {
          const T* x_p = x + ((b * d.H + ih) * d.W + iw) * d.C + g * Cg;
          std::memcpy(a_rk, x_p, size_t(Cg) * sizeof(T));
        }
      }
    }
  }
}

// col2im: dx += the (m, K) tile of column gradients of rows [r0, r0 + m), group g.
template <typename T>
void scatter_tile(T* dx, const T* col, const ConvDims& d, index_t g, index_t r0, index_t m) {
  const index_t Cg = d.C / d.G, K = kdim(d), P = d.OH * d.OW;
  for (index_t i = 0; i < m; ++i) {
    const index_t r = r0 + i, b = r / P, oh = (r % P) / d.OW, ow = r % d.OW;
    const T* c_r = col + i * K;
    for (index_t kh = 0; kh < d.KH; ++kh) {
      const index_t ih = oh * d.SH - d.PT + kh * d.DH;
      if (ih < 0 || ih >= d.H) continue;
      for (index_t kw = 0; kw < d.KW; ++kw) {
        const index_t iw = ow * d.SW - d.PL + kw * d.DW;
        if (iw < 0 || iw >= d.W) continue;
        T* __restrict dx_p = dx + ((b * d.H + ih) * d.W + iw) * d.C + g * Cg;
        const T* __restrict c_rk = c_r + (kh * d.KW + kw) * Cg;
        for (index_t c = 0; c < Cg; ++c) dx_p[c] += c_rk[c];
      }
    }
  }
}

template <typename T>
int conv_threads(const ConvDims& d, index_t parts) {
  const double flops = 2.0 * double(d.B * d.OH * d.OW) * double(kdim(d)) * double(d.F);
  if (flops < kGemmParallelFlops) return 1;
  return int(std::max<index_t>(1, std::min<index_t>(get_num_threads(), parts)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

template <typename T>
void conv2d_forward(T* y, T* z, const T* x, const T* kernel, const T* bias, const ConvDims& d,
                    Activation act) {
  const index_t M = d.B * d.OH * d.OW, K = kdim(d), Fg = d.F / d.G;
  if (M <= 0 || d.F <= 0) return;
  const bool rowwise = activation_is_rowwise(act);
  const Activation epi_act = rowwise ? Activation::linear : act;
  const bool pointwise = is_pointwise(d);
  // the kernel of each group, packed once: (K, Fg) with row stride F
  std::vector<PackedB<T>> packed;
  for (index_t g = 0; g < d.G; ++g) packed.push_back(pack_b<T>(false, K, Fg, kernel + g * Fg, d.F));
  const index_t mt = pointwise ? std::min<index_t>(M, 256) : tile_rows<T>(d);
  const index_t ntiles = (M + mt - 1) / mt;
  const int nt = conv_threads<T>(d, ntiles);
  std::vector<std::vector<T>> bufs(pointwise ? 0 : nt, std::vector<T>(size_t(mt) * size_t(K)));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t tile = 0; tile < ntiles; ++tile) {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    const index_t r0 = tile * mt, m = std::min(mt, M - r0);
    for (index_t g = 0; g < d.G; ++g) {
      const T* a = x + r0 * d.C;
      if (!pointwise) {
        gather_tile(bufs[tid].data(), x, d, g, r0, m);
        a = bufs[tid].data();
      }
      // y_tile[:, group g] = A_tile kernel_g
      gemm_packed_serial<T>(false, m, T(1), a, std::max<index_t>(K, 1), packed[g], 0,
                            packed[g].panels(), T(0), y + r0 * d.F + g * Fg, d.F);
    }
    bias_activation_block(y + r0 * d.F, d.F, m, d.F, bias, epi_act,
                          z ? z + r0 * d.F : nullptr, d.F);
  }
  if (rowwise) activation_forward(y, y, M, d.F, act);
}

template <typename T>
void conv2d_backward(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                     const T* kernel, const T* y, const T* z, const ConvDims& d,
                     Activation act) {
  const index_t M = d.B * d.OH * d.OW, K = kdim(d), Fg = d.F / d.G, P = d.OH * d.OW;
  const index_t nk = K * d.F;
  std::fill(dkernel, dkernel + nk, T(0));
  std::fill(dbias, dbias + d.F, T(0));
  if (dx) std::fill(dx, dx + d.B * d.H * d.W * d.C, T(0));
  if (M <= 0 || d.F <= 0) return;
  const T* g_out = dy;  // d loss / d z
  if (act != Activation::linear) {
    activation_backward(dz, dy, y, z, M, d.F, act);
    g_out = dz;
  }
  for (index_t r = 0; r < M; ++r) {
    const T* __restrict g_r = g_out + r * d.F;
    for (index_t f = 0; f < d.F; ++f) dbias[f] += g_r[f];
  }
  const bool pointwise = is_pointwise(d);
  // kernel_g^T (Fg, K) packed once for dcol = dz_g kernel_g^T
  std::vector<PackedB<T>> packed_t;
  if (dx)
    for (index_t g = 0; g < d.G; ++g)
      packed_t.push_back(pack_b<T>(true, Fg, K, kernel + g * Fg, d.F));
  const index_t mt = std::min(P, pointwise ? index_t(256) : tile_rows<T>(d));
  const int nt = conv_threads<T>(d, d.B);
  // per-thread buffers: A tile, dcol tile, partial dkernel (thread 0 writes dkernel itself)
  std::vector<std::vector<T>> abuf(nt, std::vector<T>(pointwise ? 0 : size_t(mt) * size_t(K)));
  std::vector<std::vector<T>> cbuf(nt, std::vector<T>(pointwise || !dx ? 0 : size_t(mt) * size_t(K)));
  std::vector<std::vector<T>> dkpart(nt > 1 ? nt - 1 : 0, std::vector<T>(size_t(nk), T(0)));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    T* dk = tid == 0 ? dkernel : dkpart[tid - 1].data();
#pragma omp for schedule(static)
    for (index_t b = 0; b < d.B; ++b) {
      for (index_t p0 = 0; p0 < P; p0 += mt) {
        const index_t r0 = b * P + p0, m = std::min(mt, P - p0);
        for (index_t g = 0; g < d.G; ++g) {
          const T* a = x + r0 * d.C;
          if (!pointwise) {
            gather_tile(abuf[tid].data(), x, d, g, r0, m);
            a = abuf[tid].data();
          }
          const T* g_tile = g_out + r0 * d.F + g * Fg;
          // dkernel_g += A_tile^T dz_tile
          gemm_serial<T>(true, false, K, Fg, m, T(1), a, std::max<index_t>(K, 1), g_tile, d.F,
                         T(1), dk + g * Fg, d.F);
          if (!dx) continue;
          if (pointwise) {
            // dx rows = dz_tile kernel^T (nothing else writes them)
            gemm_packed_serial<T>(false, m, T(1), g_tile, d.F, packed_t[g], 0,
                                  packed_t[g].panels(), T(0), dx + r0 * d.C, d.C);
          } else {
            gemm_packed_serial<T>(false, m, T(1), g_tile, d.F, packed_t[g], 0,
                                  packed_t[g].panels(), T(0), cbuf[tid].data(),
                                  std::max<index_t>(K, 1));
            scatter_tile(dx, cbuf[tid].data(), d, g, r0, m);
          }
        }
      }
    }
  }
  for (const auto& part : dkpart)
    for (index_t i = 0; i < nk; ++i) dkernel[i] += part[i];
}

// ---------------------------------------------------------------------------------------------

template <typename T>
void conv2d_forward_ref(T* y, T* z, const T* x, const T* kernel, const T* bias,
                        const ConvDims& d, Activation act) {
  const index_t Cg = d.C / d.G, Fg = d.F / d.G, M = d.B * d.OH * d.OW;
  for (index_t b = 0; b < d.B; ++b)
    for (index_t oh = 0; oh < d.OH; ++oh)
      for (index_t ow = 0; ow < d.OW; ++ow)
        for (index_t f = 0; f < d.F; ++f) {
          const index_t g = f / Fg;
          T acc = bias ? bias[f] : T(0);
          for (index_t kh = 0; kh < d.KH; ++kh)
            for (index_t kw = 0; kw < d.KW; ++kw) {
              const index_t ih = oh * d.SH - d.PT + kh * d.DH, iw = ow * d.SW - d.PL + kw * d.DW;
              if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
              for (index_t c = 0; c < Cg; ++c)
                acc += x[((b * d.H + ih) * d.W + iw) * d.C + g * Cg + c] *
                       kernel[((kh * d.KW + kw) * Cg + c) * d.F + f];
            }
          y[((b * d.OH + oh) * d.OW + ow) * d.F + f] = acc;
        }
  if (z) std::copy(y, y + M * d.F, z);
  activation_forward_ref(y, y, M, d.F, act);
}

template <typename T>
void conv2d_backward_ref(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                         const T* kernel, const T* y, const T* z, const ConvDims& d,
                         Activation act) {
  const index_t Cg = d.C / d.G, Fg = d.F / d.G, M = d.B * d.OH * d.OW;
  const T* g_out = dy;
  if (act != Activation::linear) {
    activation_backward_ref(dz, dy, y, z, M, d.F, act);
    g_out = dz;
  }
  std::fill(dkernel, dkernel + kdim(d) * d.F, T(0));
  std::fill(dbias, dbias + d.F, T(0));
  if (dx) std::fill(dx, dx + d.B * d.H * d.W * d.C, T(0));
  for (index_t b = 0; b < d.B; ++b)
    for (index_t oh = 0; oh < d.OH; ++oh)
      for (index_t ow = 0; ow < d.OW; ++ow)
        for (index_t f = 0; f < d.F; ++f) {
          const index_t g = f / Fg;
          const T go = g_out[((b * d.OH + oh) * d.OW + ow) * d.F + f];
          dbias[f] += go;
          for (index_t kh = 0; kh < d.KH; ++kh)
            for (index_t kw = 0; kw < d.KW; ++kw) {
              const index_t ih = oh * d.SH - d.PT + kh * d.DH, iw = ow * d.SW - d.PL + kw * d.DW;
              if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
              for (index_t c = 0; c < Cg; ++c) {
                const index_t xi = ((b * d.H + ih) * d.W + iw) * d.C + g * Cg + c;
                const index_t ki = ((kh * d.KW + kw) * Cg + c) * d.F + f;
                // z += x * kernel
                dkernel[ki] += x[xi] * go;
                if (dx) dx[xi] += kernel[ki] * go;
              }
            }
        }
}

#define NN_INSTANTIATE(T)                                                                      \
  template void conv2d_forward<T>(T*, T*, const T*, const T*, const T*, const ConvDims&,      \
                                  Activation);                                                 \
  template void conv2d_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*,     \
                                   const T*, const ConvDims&, Activation);                     \
  template void conv2d_forward_ref<T>(T*, T*, const T*, const T*, const T*, const ConvDims&,  \
                                      Activation);                                             \
  template void conv2d_backward_ref<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                       const T*, const ConvDims&, Activation);
NN_INSTANTIATE(float)
NN_INSTANTIATE(double)
#undef NN_INSTANTIATE

}  // namespace nanonet
