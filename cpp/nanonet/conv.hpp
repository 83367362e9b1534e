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
//   As a GEMM per group: rows M = B*OH*OW, inner K = KH*KW*Cg, columns Fg (implicit GEMM). The
//   kernel is packed once in the micro-kernel's NR panels; the rows are cut into tiles of about
//   kConvTileBytes of A, each gathered from x straight into MR panels (no im2col tile copied a
//   second time) and multiplied tile by tile with the active GEMM micro-kernel; then the bias
//   and activation run on the tile while it is in cache. A 1x1, stride-1, unpadded, ungrouped
//   conv reads x as A directly (packed GEMM). No whole-batch im2col buffer is ever made. z,
//   when not null, receives the pre-activation (needed for activation_needs_input).
//   float, G == 1: a direct kernel instead (no im2col at all; for few channels K = KH*KW*C is
//   too short an inner dimension for the GEMM, and for more the gather costs as much as the
//   multiply when F is small): register blocks of 6 output pixels x 2 SIMD vectors of filters,
//   per tap and channel 2 kernel vectors loaded and each pixel's input broadcast, the bias and
//   activation on each output row in cache; AVX-512, AVX2 and baseline copies (vecmath
//   family). double, grouped convs and, below AVX-512, C >= 64 take the implicit GEMM.
//
// Backward (overwrites dx, dkernel, dbias; dz is the reference's (B, OH, OW, F) workspace: the
// fast backward ignores it, it may be null):
//   dz = act'(y) dy;  dbias[f] = sum_{b, oh, ow} dz
//   dkernel_g = A_g^T dz_g   (tile by tile: dz, A^T gathered into MR panels, dz in NR panels
//                             and dcol live in per-thread tiles, never whole-batch buffers;
//                             float with G == 1, C <= kConvDirectMaxC: a direct kernel)
//   dcol_g = dz_g kernel_g^T, scattered back (col2im) into dx; dx may be null (not wanted).
//
// Threads: the forward splits the row tiles (batch x output tiles, static; the direct kernel:
// output rows). The backward splits chunks of whole images (kConvBwdChunks, fixed by the shape):
// each chunk owns its images of dx (col2im writes only there, zeroed by the chunk) and a partial
// dkernel / dbias, added in chunk order at the end. Work under kGemmParallelFlops stays on one
// thread. No result depends on the thread count (as long as there are at most kConvBwdChunks
// threads: more threads mean more chunks). The *_ref twins are direct loops on one thread.
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
constexpr index_t kConvBwdTileBytes = index_t(192) << 10;  // backward A / dcol tiles, each
constexpr index_t kConvBwdChunks = 8;  // image chunks of the backward (thread-count independent)
constexpr index_t kConvDirectMaxC = 4;  // direct dkernel (not im2col + GEMM) for C <= this, G = 1

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
