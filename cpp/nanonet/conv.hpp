// conv: 2-D convolution over NHWC images (Conv1D is the H = 1 case), forward and backward.
//
// Shapes (row-major, contiguous):
//   x (B, H, W, C)   kernel (KH, KW, C / G, F) (Keras layout)   bias (F) or null
//   y, z, dy, dz (B, OH, OW, F)   dx (B, H, W, C)   dkernel like kernel   dbias (F)
// G groups: input channels [g*Cg, (g+1)*Cg) (Cg = C / G) feed filters [g*Fg, (g+1)*Fg)
// (Fg = F / G); kernel[kh, kw, c, f] links channel g*Cg + c to filter f of group g = f / Fg.
// Padding is given as the number of zero rows above (PT) and zero columns left of (PL) the
// input; positions past the bottom / right edge read zero as well, so any OH, OW is valid
// ("same", "causal" and asymmetric padding are worked out by the caller).
//
// Forward:
//   ih = oh*SH - PT + kh*DH,  iw = ow*SW - PL + kw*DW
//   z[b, oh, ow, f] = bias[f] + sum_{kh, kw, c} x[b, ih, iw, g*Cg + c] kernel[kh, kw, c, f]
//   y = act(z)  (elementwise in the epilogue; softmax / log_softmax per row afterwards)
//   As a GEMM per group: rows M = B*OH*OW, inner K = KH*KW*Cg, columns Fg. The rows are cut
//   into tiles of about kConvTileBytes of A; each tile is gathered (im2col) into a per-thread
//   buffer and multiplied by the kernel packed once (pack_b), then the bias and activation run
//   on the tile while it is in cache. A 1x1, stride-1, unpadded, ungrouped conv reads x as A
//   directly. No whole-batch im2col buffer is ever made. z, when not null, receives the
//   pre-activation (needed for activation_needs_input).
//
// Backward (overwrites dx, dkernel, dbias; dz is a (B, OH, OW, F) workspace, unused and may be
// null when act is linear):
//   dz = act'(y) dy;  dbias[f] = sum_{b, oh, ow} dz
//   dkernel_g = A_g^T dz_g   (per image, tile by tile)
//   dcol_g = dz_g kernel_g^T, scattered back (col2im) into dx; dx may be null (not wanted).
//
// Threads: the forward splits the row tiles (batch x output tiles, static). The backward splits
// images: each thread owns whole images of dx (col2im writes only there) and a private partial
// dkernel, summed in thread order at the end. Work under kGemmParallelFlops stays on one thread.
// The forward does not depend on the thread count; dkernel differs across thread counts by
// float rounding only. The *_ref twins are direct loops on one thread.
#pragma once
#include "nanonet/activations.hpp"
#include "nanonet/runtime.hpp"

namespace nanonet {

struct ConvDims {
  index_t B, H, W, C;      // input
  index_t OH, OW, F;       // output
  index_t KH, KW;          // kernel window
  index_t SH, SW;          // strides
  index_t DH, DW;          // dilation
  index_t PT, PL;          // zero padding above / left
  index_t G;               // groups (C % G == 0, F % G == 0)
};

constexpr index_t kConvTileBytes = index_t(96) << 10;  // A tile: fits L2 beside the packed B

template <typename T>
void conv2d_forward(T* y, T* z, const T* x, const T* kernel, const T* bias, const ConvDims& d,
                    Activation act);
template <typename T>
void conv2d_backward(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                     const T* kernel, const T* y, const T* z, const ConvDims& d, Activation act);

template <typename T>
void conv2d_forward_ref(T* y, T* z, const T* x, const T* kernel, const T* bias,
                        const ConvDims& d, Activation act);
template <typename T>
void conv2d_backward_ref(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                         const T* kernel, const T* y, const T* z, const ConvDims& d,
                         Activation act);

}  // namespace nanonet
