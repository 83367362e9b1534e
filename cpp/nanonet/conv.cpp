// 2-D convolution through the packed GEMM; the contract is in conv.hpp.
#include "nanonet/conv.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "nanonet/gemm.hpp"
#include "nanonet/vecmath.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

namespace {

inline index_t kdim(const ConvDims& d) { return d.KH * d.KW * (d.C / d.G); }

constexpr index_t kConvMaxKc = 512;  // inner-dimension block of the forward's implicit GEMM

// A 1x1, stride-1, unpadded, ungrouped conv: x itself is the (M, C) matrix A.
inline bool is_pointwise(const ConvDims& d) {
  return d.KH == 1 && d.KW == 1 && d.SH == 1 && d.SW == 1 && d.PT == 0 && d.PL == 0 &&
         d.OH == d.H && d.OW == d.W && d.G == 1;
}

// Rows per forward tile: about kConvTileBytes of A per KC block, a multiple of mr (whole
// micro-kernel panels), at most 1024.
template <typename T>
index_t tile_rows(const ConvDims& d, index_t mr) {
  const index_t K = std::max<index_t>(std::min<index_t>(kdim(d), kConvMaxKc), 1);
  index_t mt = kConvTileBytes / index_t(sizeof(T)) / K;
  mt = std::max<index_t>(mr, std::min<index_t>(mt, 1024) / mr * mr);
  return mt;
}

// Output position (b, oh, ow) of flat row r, stepped row by row without divisions (the tile
// loops below run per element of small channel counts, where an integer division per row or
// per tap would cost more than the copy).
struct RowPos {
  index_t b, oh, ow;
  RowPos(const ConvDims& d, index_t r)
      : b(r / (d.OH * d.OW)), oh((r % (d.OH * d.OW)) / d.OW), ow(r % d.OW) {}
  void next(const ConvDims& d) {
    if (++ow == d.OW) {
      ow = 0;
      if (++oh == d.OH) {
        oh = 0;
        ++b;
      }
    }
  }
};

// im2col of rows [r0, r0 + m) (flat over b, oh, ow), group g, columns [pc, pc + kc) (ordered
// (kh, kw, c) like the kernel's rows), written straight in the micro-kernel's packed layout for A:
// panels of w = MR rows, dst[(i / w) * (kc * w) + (k - pc) * w + i % w]; the rows of the last
// panel past m are zeros. One copy instead of an im2col tile and then the GEMM's packing.
template <typename T>
void gather_panels(T* dst, index_t w, const T* x, const ConvDims& d, index_t g, index_t r0,
                   index_t m, index_t pc, index_t kc) {
  const index_t Cg = d.C / d.G, mp = (m + w - 1) / w * w;
  const index_t t0 = pc / Cg, kh0 = t0 / d.KW, kw0 = t0 % d.KW;
  RowPos rp(d, r0);
  for (index_t i = 0; i < mp; ++i) {
    T* __restrict d_i = dst + (i / w) * (kc * w) + i % w;
    if (i >= m) {
      for (index_t k = 0; k < kc; ++k) d_i[k * w] = T(0);
      continue;
    }
    const T* x_b = x + rp.b * d.H * d.W * d.C + g * Cg;
    index_t kh = kh0, kw = kw0;
    for (index_t k0 = t0 * Cg; k0 < pc + kc; k0 += Cg) {  // taps overlapping [pc, pc + kc)
      const index_t c0 = std::max<index_t>(pc - k0, 0), c1 = std::min<index_t>(Cg, pc + kc - k0);
      T* __restrict o = d_i + (k0 + c0 - pc) * w;
      const index_t ih = rp.oh * d.SH - d.PT + kh * d.DH, iw = rp.ow * d.SW - d.PL + kw * d.DW;
      if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) {
        for (index_t c = c0; c < c1; ++c) o[(c - c0) * w] = T(0);
      } else {
        const T* __restrict x_p = x_b + (ih * d.W + iw) * d.C;
        for (index_t c = c0; c < c1; ++c) o[(c - c0) * w] = x_p[c];
      }
      if (++kw == d.KW) {
        kw = 0;
        ++kh;
      }
    }
    rp.next(d);
  }
}

// im2col of rows [r0, r0 + m), group g, written straight in the micro-kernel's packed layout for
// A^T (the dkernel product's left operand, K x m): the K axis cut into panels of w = MR,
// dst[(k / w) * (m * w) + i * w + k % w] = A[r0 + i, k], zeros for K <= k < Kp (Kp = K rounded
// up to w). One copy instead of an im2col tile and then the GEMM's packing.
template <typename T>
void gather_panels_t(T* dst, index_t w, const T* x, const ConvDims& d, index_t g, index_t r0,
                     index_t m) {
  const index_t Cg = d.C / d.G, K = kdim(d), ps = m * w;
  const index_t Kp = (K + w - 1) / w * w;
  RowPos rp(d, r0);
  for (index_t i = 0; i < m; ++i, rp.next(d)) {
    T* d_i = dst + i * w;
    const T* x_b = x + rp.b * d.H * d.W * d.C + g * Cg;
    index_t q = 0, j = 0;  // panel and column of k = (kh * KW + kw) * Cg + c
    for (index_t kh = 0; kh < d.KH; ++kh) {
      const index_t ih = rp.oh * d.SH - d.PT + kh * d.DH;
      for (index_t kw = 0; kw < d.KW; ++kw) {
        const index_t iw = rp.ow * d.SW - d.PL + kw * d.DW;
        const bool in = ih >= 0 && ih < d.H && iw >= 0 && iw < d.W;
        const T* x_p = in ? x_b + (ih * d.W + iw) * d.C : nullptr;
        for (index_t c = 0; c < Cg;) {
          const index_t n = std::min(Cg - c, w - j);
          T* __restrict o = d_i + q * ps + j;
          if (in)
            for (index_t t = 0; t < n; ++t) o[t] = x_p[c + t];
          else
            for (index_t t = 0; t < n; ++t) o[t] = T(0);
          c += n;
          j += n;
          if (j == w) {
            j = 0;
            ++q;
          }
        }
      }
    }
    for (index_t k = K; k < Kp; ++k) d_i[(Kp - w) / w * ps + k % w] = T(0);
  }
}

// src (m, n) (row stride ld) packed as m x w panels: dst[(j / w) * (m * w) + i * w + j % w],
// zeros for n <= j < (n rounded up to w).
template <typename T>
void pack_panels(T* dst, index_t w, const T* src, index_t ld, index_t m, index_t n) {
  const index_t np = (n + w - 1) / w, ps = m * w;
  for (index_t q = 0; q < np; ++q) {
    const index_t j0 = q * w, nq = std::min(w, n - j0);
    T* __restrict o = dst + q * ps;
    for (index_t i = 0; i < m; ++i) {
      const T* __restrict s_i = src + i * ld + j0;
      T* __restrict o_i = o + i * w;
      for (index_t j = 0; j < nq; ++j) o_i[j] = s_i[j];
      for (index_t j = nq; j < w; ++j) o_i[j] = T(0);
    }
  }
}

// C (mm x nn, row stride ldc) = ap * bp + beta * C over packed operands of inner length kc:
// ap mm rows in MR panels (stride MR * kc), bp nn columns in NR panels (stride NR * kc); each B
// panel stays in L1 while every A panel passes (GEMM's jr / ir loops, micro-kernel per tile).
template <typename T>
void micro_tiles(const UKernel<T>& uk, index_t kc, const T* ap, const T* bp, T* c, index_t ldc,
                 T beta, index_t mm, index_t nn) {
  const index_t mr = uk.mr, nr = uk.nr;
  for (index_t q = 0; q * nr < nn; ++q) {
    const index_t nq = std::min(nr, nn - q * nr);
    for (index_t p = 0; p * mr < mm; ++p) {
      const index_t mp = std::min(mr, mm - p * mr);
      UKernelFn<T> fn = (mp < mr && mp < kMaxEdgeRows && uk.rows_fn[mp]) ? uk.rows_fn[mp] : uk.fn;
      fn(kc, ap + p * mr * kc, bp + q * nr * kc, nr, c + p * mr * ldc + q * nr, ldc, beta, mp, nq);
    }
  }
}

// col2im: dx += the (m, K) tile of column gradients of rows [r0, r0 + m), group g.
template <typename T>
void scatter_tile(T* dx, const T* col, const ConvDims& d, index_t g, index_t r0, index_t m) {
  const index_t Cg = d.C / d.G, K = kdim(d);
  RowPos rp(d, r0);
  for (index_t i = 0; i < m; ++i, rp.next(d)) {
    const T* c_r = col + i * K;
    T* dx_b = dx + rp.b * d.H * d.W * d.C + g * Cg;
    for (index_t kh = 0; kh < d.KH; ++kh) {
      const index_t ih = rp.oh * d.SH - d.PT + kh * d.DH;
      if (ih < 0 || ih >= d.H) continue;
      for (index_t kw = 0; kw < d.KW; ++kw) {
        const index_t iw = rp.ow * d.SW - d.PL + kw * d.DW;
        if (iw < 0 || iw >= d.W) continue;
        T* __restrict dx_p = dx_b + (ih * d.W + iw) * d.C;
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

// The backward's work is cut into chunks of whole images fixed by the shape, not by the thread
// count, each with its own partial dkernel and dbias added in chunk order: so the weight
// gradients are the same for any thread count. Up to kConvBwdChunks (more only when there are
// more threads), and no more partial sums than about 8 MB.
template <typename T>
index_t bwd_chunks(const ConvDims& d, int nt) {
  const index_t per = kdim(d) * d.F + d.F;
  const index_t cap = std::max<index_t>(1, (index_t(8) << 20) / index_t(sizeof(T)) / per);
  const index_t want = std::max<index_t>(nt, std::min(kConvBwdChunks, cap));
  return std::max<index_t>(1, std::min<index_t>(d.B, want));
}

// Rows per backward tile: the dkernel product's inner dimension, so longer than the forward's
// (A and dcol tiles of about kConvBwdTileBytes each), a multiple of 16, 16 to 1024.
template <typename T>
index_t bwd_tile_rows(const ConvDims& d, bool pointwise) {
  if (pointwise) return 256;
  const index_t K = std::max<index_t>(kdim(d), 1);
  index_t mt = kConvBwdTileBytes / index_t(sizeof(T)) / K;
  mt = std::max<index_t>(16, mt / 16 * 16);
  return std::min<index_t>(mt, 1024);
}

// ---------------------------------------------------------------------------------------------
// Direct convolution (float, G == 1; the dkernel only for C <= kConvDirectMaxC): for few input
// channels im2col + GEMM would multiply over an inner dimension of only KH*KW*C (9 for the first
// layer of an image net), and for more the im2col gather costs about as much as the multiply
// when F is small (measured 2-3x slower than this kernel for 16-64 channels). Instead the
// output is computed in register blocks of NP pixels x NF vectors of filters: per tap and input
// channel, NF kernel vectors are loaded once and each pixel's input value is broadcast into them.
// The kernel is repacked with its filter axis padded to whole blocks (kp, zeros past F), so the
// loops have no filter remainder; the last pixels of a row are a block shifted left (pixels
// computed twice, same values), pixels whose window leaves the image are done one at a time
// with bounds checks. Written on GCC's vector extensions: one body compiled per ISA (64-byte
// vectors for AVX-512, 32 for AVX2, 16 for the baseline), for float only (double, the
// gradient-checking type, takes the GEMM path).

#if defined(__GNUC__) || defined(__clang__)
#define NN_CONV_DIRECT 1
#define NN_CONV_INLINE inline __attribute__((always_inline))

template <typename T, int VB>
struct VecOf {
  typedef T type __attribute__((vector_size(VB)));
};

// (by reference: a vector wider than the baseline's registers passed by value would change the
// ABI of these default-target helpers, -Wpsabi)
template <typename V, typename T>
NN_CONV_INLINE void vload(V& v, const T* p) {
  std::memcpy(&v, p, sizeof v);
}

template <typename V, typename T>
NN_CONV_INLINE void vstore(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// Register blocks: NP pixels x NF filter vectors, 12 accumulators (16 vector registers: AVX2,
// SSE). Two vectors of filters by 6 pixels while at least two vectors' worth remain; a last
// block of at most one vector (F = 16 under AVX-512, 8 under AVX2) takes one vector by 12
// pixels, so it computes no padding lanes. With 32 registers (AVX-512) the blocks are twice as
// large, see direct_fwd_rows_body: half the loads per multiply-add (1.3-1.5x at 64-128
// channels on the Intel VM, about 1.1x at 32; RESULTS.md).
constexpr int kDirectPixels = 6;
constexpr int kDirectPixelsOneVector = 12;
template <int VB>
constexpr bool kWideRegisters = VB == 64;

// Columns [lo, hi) of output pixels whose whole window row lies inside the image.
inline void interior_cols(const ConvDims& d, index_t& lo, index_t& hi) {
  lo = (d.PL + d.SW - 1) / d.SW;
  const index_t last = d.W - 1 - (d.KW - 1) * d.DW + d.PL;  // ow*SW <= last
  hi = last < 0 ? 0 : last / d.SW + 1;
  lo = std::min(lo, d.OW);
  hi = std::max(lo, std::min(hi, d.OW));
}

// y[b, oh, ow0 + p, f0 + j] for p < NPX, j < nf (nf <= NF * NV): x_b is image b, k_f the packed
// kernel at column f0 (row stride Fp). Check: test each input column (edge pixels).
template <typename T, int VB, int NPX, int NF, bool Check>
NN_CONV_INLINE void direct_fwd_block(T* y_p, const T* x_b, const T* k_f, index_t Fp,
                                     const ConvDims& d, index_t oh, index_t ow0, index_t nf) {
  using V = typename VecOf<T, VB>::type;
  constexpr int NV = VB / int(sizeof(T));
  V acc[NPX][NF];
  for (int p = 0; p < NPX; ++p)
    for (int j = 0; j < NF; ++j) acc[p][j] = V{};
  for (index_t kh = 0; kh < d.KH; ++kh) {
    const index_t ih = oh * d.SH - d.PT + kh * d.DH;
    if (ih < 0 || ih >= d.H) continue;
    const T* x_h = x_b + ih * d.W * d.C;
    if (!Check && d.DW == 1) {
      // undilated rows: the (kw, c) pairs of a window row are contiguous in the image row and
      // in the kernel, so one loop of KW * C (3 trips, not 3 loops of 1, for the first layer)
      const T* x_q = x_h + (ow0 * d.SW - d.PL) * d.C;
      const T* k_q = k_f + kh * d.KW * d.C * Fp;
      const index_t sp = d.SW * d.C;
      for (index_t q = 0; q < d.KW * d.C; ++q) {
        V kv[NF];
        for (int j = 0; j < NF; ++j) vload(kv[j], k_q + q * Fp + j * NV);
        for (int p = 0; p < NPX; ++p) {
          const T xv = x_q[p * sp + q];
          for (int j = 0; j < NF; ++j) acc[p][j] += xv * kv[j];
        }
      }
      continue;
    }
    for (index_t kw = 0; kw < d.KW; ++kw) {
      const index_t iw0 = ow0 * d.SW - d.PL + kw * d.DW;
      const T* k_t = k_f + (kh * d.KW + kw) * d.C * Fp;
      for (index_t c = 0; c < d.C; ++c) {
        V kv[NF];
        for (int j = 0; j < NF; ++j) vload(kv[j], k_t + c * Fp + j * NV);
        for (int p = 0; p < NPX; ++p) {
          const index_t iw = iw0 + p * d.SW;
          T xv;
          if (Check)
            xv = (iw >= 0 && iw < d.W) ? x_h[iw * d.C + c] : T(0);
          else
            xv = x_h[iw * d.C + c];
          // z += x * kernel
          for (int j = 0; j < NF; ++j) acc[p][j] += xv * kv[j];
        }
      }
    }
  }
  for (int p = 0; p < NPX; ++p) {
    T* y_q = y_p + p * d.F;
    if (nf == NF * NV) {
      for (int j = 0; j < NF; ++j) vstore(y_q + j * NV, acc[p][j]);
    } else {
      T tmp[NF * NV];
      for (int j = 0; j < NF; ++j) vstore(tmp + j * NV, acc[p][j]);
      for (index_t j = 0; j < nf; ++j) y_q[j] = tmp[j];
    }
  }
}

// Output rows [row0, row1) (flat over b, oh), then bias and activation on each row in cache.
template <typename T, int VB, int NF, int NP>
NN_CONV_INLINE void direct_fwd_row(T* y_r, const T* x_b, const T* k_f, index_t Fp,
                                   const ConvDims& d, index_t oh, index_t nf, index_t lo,
                                   index_t hi) {
  for (index_t ow = 0; ow < lo; ++ow)
    direct_fwd_block<T, VB, 1, NF, true>(y_r + ow * d.F, x_b, k_f, Fp, d, oh, ow, nf);
  // whole blocks of NP, then the rest in blocks of kDirectPixels, the last one shifted left
  // (pixels computed twice, same values); one pixel at a time only for a row narrower than that
  constexpr int NS = kDirectPixels;
  index_t ow = lo;
  for (; ow + NP <= hi; ow += NP)
    direct_fwd_block<T, VB, NP, NF, false>(y_r + ow * d.F, x_b, k_f, Fp, d, oh, ow, nf);
  if (ow < hi && hi - lo >= NS) {
    for (;; ow += NS) {
      const index_t o = std::min(ow, hi - NS);
      direct_fwd_block<T, VB, NS, NF, false>(y_r + o * d.F, x_b, k_f, Fp, d, oh, o, nf);
      if (o == hi - NS) break;
    }
  } else {
    for (; ow < hi; ++ow)
      direct_fwd_block<T, VB, 1, NF, true>(y_r + ow * d.F, x_b, k_f, Fp, d, oh, ow, nf);
  }
  for (ow = hi; ow < d.OW; ++ow)
    direct_fwd_block<T, VB, 1, NF, true>(y_r + ow * d.F, x_b, k_f, Fp, d, oh, ow, nf);
}

template <typename T, int VB>
NN_CONV_INLINE void direct_fwd_rows_body(T* y, T* z, const T* x, const T* kp, index_t Fp,
                                         const T* bias, const ConvDims& d, Activation epi_act,
                                         index_t row0, index_t row1) {
  constexpr int NV = VB / int(sizeof(T));
  index_t lo, hi;
  interior_cols(d, lo, hi);
  for (index_t row = row0; row < row1; ++row) {
    const index_t b = row / d.OH, oh = row % d.OH;
    const T* x_b = x + b * d.H * d.W * d.C;
    T* y_r = y + row * d.OW * d.F;
    // blocks of 2 vectors; a last partial one of more than a vector computes its padding lanes
    // and stores only nf of them, one of at most a vector takes the 1-vector x 12-pixel block.
    // With AVX-512's 32 registers the blocks hold 24 accumulators: 4 vectors x 6 pixels while 4
    // vectors' worth of filters remain, else 2 vectors x 12 pixels.
    for (index_t f0 = 0; f0 < d.F;) {
      const index_t rest = d.F - f0;
      if (kWideRegisters<VB> && rest >= 4 * NV) {
        direct_fwd_row<T, VB, 4, kDirectPixels>(y_r + f0, x_b, kp + f0, Fp, d, oh, 4 * NV, lo,
                                                hi);
        f0 += 4 * NV;
      } else if (rest > NV) {
        direct_fwd_row<T, VB, 2, kWideRegisters<VB> ? kDirectPixelsOneVector : kDirectPixels>(
            y_r + f0, x_b, kp + f0, Fp, d, oh, std::min<index_t>(2 * NV, rest), lo, hi);
        f0 += 2 * NV;
      } else {
        direct_fwd_row<T, VB, 1, kDirectPixelsOneVector>(y_r + f0, x_b, kp + f0, Fp, d, oh, rest,
                                                         lo, hi);
        f0 += NV;
      }
    }
    bias_activation_block(y_r, d.F, d.OW, d.F, bias, epi_act, z ? z + row * d.OW * d.F : nullptr,
                          d.F);
  }
}

#define NN_DIRECT_ARGS_T(T)                                                                 \
  (T * y, T * z, const T* x, const T* kp, index_t Fp, const T* bias, const ConvDims& d,     \
   Activation epi_act, index_t row0, index_t row1)
#define NN_DIRECT_ARGS (y, z, x, kp, Fp, bias, d, epi_act, row0, row1)

#ifdef NN_TARGET_V4
NN_TARGET_V4 void direct_fwd_rows_v4 NN_DIRECT_ARGS_T(float) {
  direct_fwd_rows_body<float, 64>NN_DIRECT_ARGS;
}
NN_TARGET_V3 void direct_fwd_rows_v3 NN_DIRECT_ARGS_T(float) {
  direct_fwd_rows_body<float, 32>NN_DIRECT_ARGS;
}
#endif
void direct_fwd_rows NN_DIRECT_ARGS_T(float) {
#ifdef NN_TARGET_V4
  switch (family_isa(Family::vecmath)) {
    case Isa::avx512: return direct_fwd_rows_v4 NN_DIRECT_ARGS;
    case Isa::avx2: return direct_fwd_rows_v3 NN_DIRECT_ARGS;
    default: break;
  }
#endif
  direct_fwd_rows_body<float, 16>NN_DIRECT_ARGS;
}
#undef NN_DIRECT_ARGS_T
#undef NN_DIRECT_ARGS

// dkp[((kh*KW + kw)*C + c) * Fp + f] += sum over the rows [r0, r0 + m) of the input under tap
// (kh, kw) times dz: g row i (stride ldg, Fp readable columns). Per output row segment, tap and
// input channel, the pixels whose input column is inside the image ([lo[kw], hi[kw])) are summed
// into 4 x 2 vector accumulators (4 independent chains per filter vector), then added to dkp.
template <typename T, int VB>
NN_CONV_INLINE void direct_dk_body(T* dkp, const T* g, index_t ldg, const T* x, index_t Fp,
                                   const ConvDims& d, const index_t* lo, const index_t* hi,
                                   index_t r0, index_t m) {
  using V = typename VecOf<T, VB>::type;
  constexpr int NV = VB / int(sizeof(T));
  RowPos rp(d, r0);
  for (index_t i = 0; i < m;) {
    const index_t ow0 = rp.ow, n = std::min(m - i, d.OW - ow0);
    const T* x_b = x + rp.b * d.H * d.W * d.C;
    for (index_t kh = 0; kh < d.KH; ++kh) {
      const index_t ih = rp.oh * d.SH - d.PT + kh * d.DH;
      if (ih < 0 || ih >= d.H) continue;
      for (index_t kw = 0; kw < d.KW; ++kw) {
        const index_t a = std::max(lo[kw], ow0), e = std::min(hi[kw], ow0 + n);
        if (a >= e) continue;
        const index_t off = kw * d.DW - d.PL, sx = d.SW * d.C;
        for (index_t c = 0; c < d.C; ++c) {
          // x of pixel ow: x_c[ow * sx]; its dz row: g_0 + ow * ldg
          const T* x_c = x_b + (ih * d.W + off) * d.C + c;
          const T* g_0 = g + (i - ow0) * ldg;
          T* dk_t = dkp + ((kh * d.KW + kw) * d.C + c) * Fp;
          for (index_t f0 = 0; f0 < Fp; f0 += 2 * NV) {
            V s0[4], s1[4], g0, g1;
            for (int u = 0; u < 4; ++u) s0[u] = s1[u] = V{};
            index_t ow = a;
            for (; ow + 4 <= e; ow += 4)
              for (int u = 0; u < 4; ++u) {
                const T xv = x_c[(ow + u) * sx];
                vload(g0, g_0 + (ow + u) * ldg + f0);
                vload(g1, g_0 + (ow + u) * ldg + f0 + NV);
                // dkernel += x * dz
                s0[u] += xv * g0;
                s1[u] += xv * g1;
              }
            for (; ow < e; ++ow) {
              const T xv = x_c[ow * sx];
              vload(g0, g_0 + ow * ldg + f0);
              vload(g1, g_0 + ow * ldg + f0 + NV);
              s0[0] += xv * g0;
              s1[0] += xv * g1;
            }
            V t;
            vload(t, dk_t + f0);
            t += (s0[0] + s0[1]) + (s0[2] + s0[3]);
            vstore(dk_t + f0, t);
            vload(t, dk_t + f0 + NV);
            t += (s1[0] + s1[1]) + (s1[2] + s1[3]);
            vstore(dk_t + f0 + NV, t);
          }
        }
      }
    }
    i += n;
    for (index_t j = 0; j < n; ++j) rp.next(d);
  }
}

#define NN_DK_ARGS_T(T)                                                                     \
  (T * dkp, const T* g, index_t ldg, const T* x, index_t Fp, const ConvDims& d,             \
   const index_t* lo, const index_t* hi, index_t r0, index_t m)
#define NN_DK_ARGS (dkp, g, ldg, x, Fp, d, lo, hi, r0, m)
#ifdef NN_TARGET_V4
NN_TARGET_V4 void direct_dk_v4 NN_DK_ARGS_T(float) { direct_dk_body<float, 64>NN_DK_ARGS; }
NN_TARGET_V3 void direct_dk_v3 NN_DK_ARGS_T(float) { direct_dk_body<float, 32>NN_DK_ARGS; }
#endif
void direct_dk NN_DK_ARGS_T(float) {
#ifdef NN_TARGET_V4
  switch (family_isa(Family::vecmath)) {
    case Isa::avx512: return direct_dk_v4 NN_DK_ARGS;
    case Isa::avx2: return direct_dk_v3 NN_DK_ARGS;
    default: break;
  }
#endif
  direct_dk_body<float, 16>NN_DK_ARGS;
}
void direct_dk NN_DK_ARGS_T(double) {}  // never called: the direct kernels are float only
#undef NN_DK_ARGS_T
#undef NN_DK_ARGS

// The filter block of the direct kernel (2 vectors of the active copy): what Fp pads to.
inline index_t direct_block() {
#ifdef NN_TARGET_V4
  const Isa isa = family_isa(Family::vecmath);
  if (isa == Isa::avx512) return 32;
  if (isa == Isa::avx2) return 16;
#endif
  return 8;
}
#else
#define NN_CONV_DIRECT 0
#endif

template <typename T>
bool use_direct(const ConvDims& d) {
  return NN_CONV_DIRECT && sizeof(T) == 4 && d.G == 1 && d.C <= kConvDirectMaxC;
}

// The direct forward when it applies (float, G == 1): y (and z) written,
// the bias and the elementwise activation applied; false otherwise (nothing written).
bool direct_forward(float* y, float* z, const float* x, const float* kernel, const float* bias,
                    const ConvDims& d, Activation epi_act) {
#if NN_CONV_DIRECT
  if (d.G != 1) return false;
  // With 16 AVX2 / SSE registers the 12 accumulators leave the kernel more loads per
  // multiply-add than the 6 x 16 GEMM tile: from 64 channels the implicit GEMM was faster there
  // (measured avx2: 0.81-0.96x at 64-128 channels, 1.4-2.6x below).
  if (d.C >= 64 && family_isa(Family::vecmath) != Isa::avx512) return false;
  // the kernel (K, F) with its filters padded to whole blocks
  const index_t K = kdim(d), nb = direct_block(), Fp = (d.F + nb - 1) / nb * nb;
  std::vector<float> kp(size_t(K * Fp), 0.0f);
  for (index_t k = 0; k < K; ++k)
    std::copy(kernel + k * d.F, kernel + (k + 1) * d.F, kp.begin() + k * Fp);
  const index_t rows = d.B * d.OH;
  const int nt = conv_threads<float>(d, rows);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#ifdef _OPENMP
    const index_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const index_t tid = 0, nth = 1;
#endif
    const index_t r0 = rows * tid / nth, r1 = rows * (tid + 1) / nth;
    if (r0 < r1) direct_fwd_rows(y, z, x, kp.data(), Fp, bias, d, epi_act, r0, r1);
  }
  return true;
#else
  return false;
#endif
}
bool direct_forward(double*, double*, const double*, const double*, const double*,
                    const ConvDims&, Activation) {
  return false;
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
  if (direct_forward(y, z, x, kernel, bias, d, epi_act)) {
    if (rowwise) activation_forward(y, y, M, d.F, act);
    return;
  }
  if (is_pointwise(d)) {
    // x is A: the packed GEMM on row tiles, the epilogue on each tile
    const PackedB<T> packed = pack_b<T>(false, K, d.F, kernel, d.F);
    const index_t mt = std::min<index_t>(M, 256), ntiles = (M + mt - 1) / mt;
    const int nt = conv_threads<T>(d, ntiles);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (index_t tile = 0; tile < ntiles; ++tile) {
      const index_t r0 = tile * mt, m = std::min(mt, M - r0);
      gemm_packed_serial<T>(false, m, T(1), x + r0 * d.C, d.C, packed, 0, packed.panels(), T(0),
                            y + r0 * d.F, d.F);
      bias_activation_block(y + r0 * d.F, d.F, m, d.F, bias, epi_act,
                            z ? z + r0 * d.F : nullptr, d.F);
    }
    if (rowwise) activation_forward(y, y, M, d.F, act);
    return;
  }
  // Implicit GEMM: the kernel of each group packed once in NR panels per KC block of its K rows;
  // each tile of rows gathered from x straight into MR panels per KC block, then the micro-kernel
  // on every (MR, NR) tile, bias and activation on the tile while it is in cache.
  // (KC: whole K up to kConvMaxKc, so most convs write y once, beta 0; the micro-kernel's B
  // panel then outgrows L1, but it streams only 2 vectors of B per MR x NR multiply-adds)
  const UKernel<T>& uk = gemm_ukernel<T>();
  const index_t nkc = (K + kConvMaxKc - 1) / kConvMaxKc, kcb = nkc > 1 ? (K + nkc - 1) / nkc : K;
  const index_t Fgp = (Fg + uk.nr - 1) / uk.nr * uk.nr;
  std::vector<T> wp(size_t(d.G * K * Fgp));
  for (index_t g = 0; g < d.G; ++g)
    for (index_t pc = 0; pc < K; pc += kcb) {
      const index_t kc = std::min(kcb, K - pc);
      pack_panels(wp.data() + (g * K + pc) * Fgp, uk.nr, kernel + pc * d.F + g * Fg, d.F, kc, Fg);
    }
  const index_t mt = tile_rows<T>(d, uk.mr), ntiles = (M + mt - 1) / mt;
  const int nt = conv_threads<T>(d, ntiles);
  std::vector<std::vector<T>> bufs(nt, std::vector<T>(size_t(mt * std::min(kcb, K))));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t tile = 0; tile < ntiles; ++tile) {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    const index_t r0 = tile * mt, m = std::min(mt, M - r0);
    if (K == 0) std::fill(y + r0 * d.F, y + (r0 + m) * d.F, T(0));  // no input channels
    for (index_t g = 0; g < d.G; ++g)
      for (index_t pc = 0; pc < K; pc += kcb) {
        const index_t kc = std::min(kcb, K - pc);
        // y_tile[:, group g] (+)= A_tile[:, pc : pc + kc] kernel_g[pc : pc + kc]
        gather_panels(bufs[tid].data(), uk.mr, x, d, g, r0, m, pc, kc);
        micro_tiles(uk, kc, bufs[tid].data(), wp.data() + (g * K + pc) * Fgp,
                    y + r0 * d.F + g * Fg, d.F, pc == 0 ? T(0) : T(1), m, Fg);
      }
    bias_activation_block(y + r0 * d.F, d.F, m, d.F, bias, epi_act,
                          z ? z + r0 * d.F : nullptr, d.F);
  }
  if (rowwise) activation_forward(y, y, M, d.F, act);
}

template <typename T>
void conv2d_backward(T* dx, T* dkernel, T* dbias, T* /*dz: per-tile buffers instead*/,
                     const T* dy, const T* x, const T* kernel, const T* y, const T* z,
                     const ConvDims& d, Activation act) {
  const index_t M = d.B * d.OH * d.OW, K = kdim(d), Fg = d.F / d.G, P = d.OH * d.OW;
  const index_t nk = K * d.F;
  if (M <= 0 || d.F <= 0) {
    std::fill(dkernel, dkernel + nk, T(0));
    std::fill(dbias, dbias + d.F, T(0));
    if (dx) std::fill(dx, dx + d.B * d.H * d.W * d.C, T(0));
    return;
  }
  const bool pointwise = is_pointwise(d), linear = act == Activation::linear;
  const bool rowwise = activation_is_rowwise(act);
  // kernel_g^T (Fg, K) packed once for dcol = dz_g kernel_g^T
  std::vector<PackedB<T>> packed_t;
  if (dx)
    for (index_t g = 0; g < d.G; ++g)
      packed_t.push_back(pack_b<T>(true, Fg, K, kernel + g * Fg, d.F));
  const int nt = conv_threads<T>(d, d.B);
  const index_t nchunks = bwd_chunks<T>(d, nt);
  const index_t mt = bwd_tile_rows<T>(d, pointwise);
  const UKernel<T>& uk = gemm_ukernel<T>();
  const index_t Kp = (K + uk.mr - 1) / uk.mr * uk.mr, Fgp = (Fg + uk.nr - 1) / uk.nr * uk.nr;
  // per-thread tiles: A^T and dz packed for the micro-kernel, dcol, dz; partial sums
  // [dkernel | dbias] of chunks 1.. (chunk 0 writes dkernel and dbias themselves), added in
  // chunk order at the end
  const bool direct = use_direct<T>(d);
  index_t Fp = d.F;
#if NN_CONV_DIRECT
  if (direct) Fp = (d.F + direct_block() - 1) / direct_block() * direct_block();
#endif
  std::vector<std::vector<T>> abuf(nt, std::vector<T>(direct ? 0 : size_t(mt * Kp)));
  std::vector<std::vector<T>> bbuf(nt, std::vector<T>(size_t(mt * std::max(Fgp, Fp))));
  std::vector<std::vector<T>> cbuf(nt, std::vector<T>(pointwise || !dx ? 0 : size_t(mt * K)));
  std::vector<std::vector<T>> gbuf(nt, std::vector<T>(linear ? 0 : size_t(mt * d.F)));
  std::vector<T> parts(size_t((nchunks - 1) * (nk + d.F)));
  // few input channels: dkernel by the direct kernel into a per-thread (K, Fp) sum (Fp: F
  // padded to the kernel's filter blocks; dz tiles padded alike when F is not a multiple)
  std::vector<index_t> lo, hi;
#if NN_CONV_DIRECT
  if (direct) {
    for (index_t kw = 0; kw < d.KW; ++kw) {  // pixels whose input column is inside
      const index_t off = kw * d.DW - d.PL;
      const index_t a = off >= 0 ? 0 : (-off + d.SW - 1) / d.SW;
      const index_t last = d.W - 1 - off;  // ow * SW <= last
      const index_t e = last < 0 ? 0 : last / d.SW + 1;
      lo.push_back(std::min(a, d.OW));
      hi.push_back(std::max(std::min(a, d.OW), std::min(e, d.OW)));
    }
  }
#endif
  std::vector<std::vector<T>> dkbuf(direct ? nt : 0, std::vector<T>(size_t(K * Fp)));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t ch = 0; ch < nchunks; ++ch) {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    T* dk = ch == 0 ? dkernel : parts.data() + (ch - 1) * (nk + d.F);
    T* db = ch == 0 ? dbias : dk + nk;
    std::fill(dk, dk + nk, T(0));
    std::fill(db, db + d.F, T(0));
    if (direct) std::fill(dkbuf[tid].begin(), dkbuf[tid].end(), T(0));
    const index_t b0 = d.B * ch / nchunks, b1 = d.B * (ch + 1) / nchunks;
    // this chunk's images of dx (col2im adds into them; a pointwise conv overwrites its rows)
    if (dx && !pointwise)
      std::fill(dx + b0 * d.H * d.W * d.C, dx + b1 * d.H * d.W * d.C, T(0));
    for (index_t r0 = b0 * P; r0 < b1 * P; r0 += mt) {
      const index_t m = std::min(mt, b1 * P - r0);
      // dz = act'(.) dy on the tile
      const T* g_out = dy + r0 * d.F;
      if (!linear) {
        T* g_t = gbuf[tid].data();
        const T* y_t = y ? y + r0 * d.F : nullptr;
        const T* z_t = z ? z + r0 * d.F : nullptr;
        if (rowwise) {
          for (index_t i = 0; i < m; ++i)
            activation_backward_span<T>(g_t + i * d.F, g_out + i * d.F, y_t + i * d.F, nullptr,
                                     d.F, act);
        } else {
          activation_backward_span<T>(g_t, g_out, y_t, z_t, m * d.F, act);
        }
        g_out = g_t;
      }
      for (index_t i = 0; i < m; ++i) {
        const T* __restrict g_r = g_out + i * d.F;
        T* __restrict db_ = db;
        for (index_t f = 0; f < d.F; ++f) db_[f] += g_r[f];
      }
#if NN_CONV_DIRECT
      if (direct) {
        const T* g_p = g_out;
        if (Fp != d.F) {  // dz rows padded to whole filter blocks
          pack_panels(bbuf[tid].data(), Fp, g_out, d.F, m, d.F);
          g_p = bbuf[tid].data();
        }
        direct_dk(dkbuf[tid].data(), g_p, Fp == d.F ? d.F : Fp, x, Fp, d, lo.data(), hi.data(),
                  r0, m);
      }
#endif
      for (index_t g = 0; g < d.G; ++g) {
        const T* g_tile = g_out + g * Fg;
        if (!direct) {
          // dkernel_g += A_tile^T dz_tile: A^T gathered into MR panels, dz into NR panels
          gather_panels_t(abuf[tid].data(), uk.mr, x, d, g, r0, m);
          pack_panels(bbuf[tid].data(), uk.nr, g_tile, d.F, m, Fg);
          micro_tiles(uk, m, abuf[tid].data(), bbuf[tid].data(), dk + g * Fg, d.F, T(1), K, Fg);
        }
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
    if (direct)
      for (index_t k = 0; k < K; ++k)
        for (index_t f = 0; f < d.F; ++f) dk[k * d.F + f] += dkbuf[tid][size_t(k * Fp + f)];
  }
  for (index_t ch = 1; ch < nchunks; ++ch) {
    const T* part = parts.data() + (ch - 1) * (nk + d.F);
    for (index_t i = 0; i < nk; ++i) dkernel[i] += part[i];
    for (index_t f = 0; f < d.F; ++f) dbias[f] += part[nk + f];
  }
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
