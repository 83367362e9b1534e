// pooling: global average and global max pooling over the time axis, mask-aware.
//
// Shapes (row-major, contiguous): x (B, T, F), dx (B, T, F), y (B, F), dy (B, F),
// argmax (B, F) int64, mask (B, T) bool or null (null: every step counts). S is float or double
// (T is the time dimension here). F is the feature width.
//
// global_avg_pool1d_forward:   c_b = sum_t m_bt (m_bt = mask[b, t] ? 1 : 0)
//   y_bf = sum_t m_bt x_btf / c_b;  a row with c_b == 0 (fully masked, or T == 0) gives y_b = 0.
// global_avg_pool1d_backward:  dx_btf = m_bt * dy_bf / c_b  (0 where c_b == 0).
// global_max_pool1d_forward:   argmax_bf = the first unmasked t with the largest x_btf;
//   y_bf = x_b,argmax,f. A NaN wins (the first NaN, as numpy.argmax), so NaN propagates. A row
//   with no unmasked step gives argmax_bf = -1 and y_bf = 0.
// global_max_pool1d_backward:  dx_btf = dy_bf if t == argmax_bf else 0 (argmax -1: all 0).
//   argmax must lie in [-1, T); the binding checks this before calling.
//
// Every output is overwritten (dx entirely, zeros included). Sums accumulate in double.
// Threads: the forward passes split (b, feature block of kPoolFeatureBlock) pairs, the backward
// passes split b; each output element is written by one thread and the order of a sum never
// depends on the thread count, so results are bit-identical for any thread count. Small
// problems stay on one thread. The *_ref twins are plain serial loops.
#pragma once
#include <cstdint>

#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kPoolFeatureBlock = 64;
constexpr index_t kPoolChannelBlock = 8;

template <typename S>
void global_avg_pool1d_forward(S* y, const S* x, const bool* mask, index_t B, index_t T,
                               index_t F);
template <typename S>
void global_avg_pool1d_forward_ref(S* y, const S* x, const bool* mask, index_t B, index_t T,
                                   index_t F);

template <typename S>
void global_avg_pool1d_backward(S* dx, const S* dy, const bool* mask, index_t B, index_t T,
                                index_t F);
template <typename S>
void global_avg_pool1d_backward_ref(S* dx, const S* dy, const bool* mask, index_t B, index_t T,
                                    index_t F);

template <typename S>
void global_max_pool1d_forward(S* y, std::int64_t* argmax, const S* x, const bool* mask,
                               index_t B, index_t T, index_t F);
template <typename S>
void global_max_pool1d_forward_ref(S* y, std::int64_t* argmax, const S* x, const bool* mask,
                                   index_t B, index_t T, index_t F);

template <typename S>
void global_max_pool1d_backward(S* dx, const S* dy, const std::int64_t* argmax, index_t B,
                                index_t T, index_t F);
template <typename S>
void global_max_pool1d_backward_ref(S* dx, const S* dy, const std::int64_t* argmax, index_t B,
                                    index_t T, index_t F);

// ---------------------------------------------------------------------------------------------
// Windowed pooling over NHWC images (MaxPooling2D / AveragePooling2D; the 1-D layers are the
// H = 1 case). x (B, H, W, C), y / dy (B, OH, OW, C), argmax (B, OH, OW, C) int64 or null.
// Window of output (oh, ow): rows ih = oh*SH - PT + i (0 <= i < PH), columns
// iw = ow*SW - PL + j (0 <= j < PW), only those inside the image (padding is never read).
//   max:  y = max over the window; argmax = ih*W + iw of the first max (a NaN wins, as above);
//         argmax is written only when not null (training). An empty window: y = 0, argmax -1.
//   avg:  y = sum over the window / (number of in-image positions): Keras's "same" padding
//         excludes the padding from the count. An empty window: y = 0.
// Backward overwrites dx: max routes dy to argmax (argmax in [-1, H*W), checked by the binding);
// avg spreads dy / count over the window.
// Threads: forward over (b, oh) rows, backward over images b (overlapping windows of one image
// stay on one thread); no sum depends on the thread count.
// The max forward works on kPoolChannelBlock channels at a time (branch-free, vectorised), the
// last C % kPoolChannelBlock channels one by one.
struct Pool2DDims {
  index_t B, H, W, C, OH, OW, PH, PW, SH, SW, PT, PL;
};

template <typename S>
void max_pool2d_forward(S* y, std::int64_t* argmax, const S* x, const Pool2DDims& d);
template <typename S>
void max_pool2d_backward(S* dx, const S* dy, const std::int64_t* argmax, const Pool2DDims& d);
template <typename S>
void avg_pool2d_forward(S* y, const S* x, const Pool2DDims& d);
template <typename S>
void avg_pool2d_backward(S* dx, const S* dy, const Pool2DDims& d);

}  // namespace nanonet
