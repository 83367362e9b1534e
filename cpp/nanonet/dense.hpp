// dense: a fully connected layer, y = f(x kernel + bias), and its backward.
//
// Shapes (row-major, contiguous): x (B, I), kernel (I, H) (Keras layout, H = units),
// bias (H) or null, y (B, H); f is one of activations.hpp.
//
// Forward:  z = x kernel + bias;  y = f(z).
//   One GEMM. For elementwise f (linear, sigmoid, tanh, relu) the bias add and f run in the GEMM
//   epilogue, on each finished block of y while it is in cache; for softmax / log_softmax the
//   epilogue adds the bias and f is applied per row after the GEMM. y is overwritten and is the
//   cache backward needs (f' is computed from the output). z (B, H), when not null, receives the
//   pre-activation x kernel + bias, written in the same epilogue; it is required for
//   activation_needs_input(f) (gelu, gelu_approximate, silu), whose backward reads it.
//
// Backward (overwrites dx, dkernel, dbias):
//   dz      = f'(y) * dy            (activation_backward from the output y; and from the
//                                    pre-activation z for activation_needs_input(f))
//   dkernel = x^T dz                (I, H)   one GEMM, transpose_a
//   dbias   = sum_B dz              (H)      always computed, even for a layer without bias
//   dx      = dz kernel^T           (B, I)   one GEMM, transpose_b; skipped when dx is null
//   dz is written to the workspace `dz` (B, H) unless f is linear (then dz = dy, no copy).
//   For elementwise f, dz and dbias are computed in one pass split by columns of H.
//
// Threads: the GEMMs are multithreaded inside (gemm.hpp). The dz / dbias pass splits H into one
// column chunk per thread (each dbias[h] is summed over B in order 0..B-1 by one thread); the
// softmax pass splits rows. Small problems (< kDenseParallelElems elements of y) stay on one
// thread. Results do not depend on the thread count.
#pragma once
#include "nanonet/activations.hpp"
#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kDenseParallelElems = index_t(1) << 15;

// z: the pre-activation output (B, H) or null (see above).
template <typename T>
void dense_forward(T* y, T* z, const T* x, const T* kernel, const T* bias, index_t B, index_t I,
                   index_t H, Activation act);

// dx may be null (not wanted). dz: workspace (B, H), may be null when act is linear. z: the
// forward's pre-activation (B, H), read for activation_needs_input(act), else may be null.
template <typename T>
void dense_backward(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                    const T* kernel, const T* y, const T* z, index_t B, index_t I, index_t H,
                    Activation act);

// Scalar twins: gemm_ref + activation_*_ref + plain loops, one thread.
template <typename T>
void dense_forward_ref(T* y, T* z, const T* x, const T* kernel, const T* bias, index_t B,
                       index_t I, index_t H, Activation act);
template <typename T>
void dense_backward_ref(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                        const T* kernel, const T* y, const T* z, index_t B, index_t I,
                        index_t H, Activation act);

}  // namespace nanonet
