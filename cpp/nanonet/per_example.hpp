// per_example: per-example squared gradient norms for DP-SGD (Abadi et al. 2016), computed
// without materialising the per-example gradients ("ghost norms").
//
// Dimension letters: B batch, T rows per example (time steps), K and N the two widths,
// E embedding width, V vocabulary.
//
// per_example_matmul_sq_norms: a layer whose weight gradient is a sum of outer products over the
// rows of an example (Dense on (B, T, I) inputs, the LSTM's [x | h] against its gate gradients,
// the projections of attention) has the per-example gradient A_b^T D_b (K x N), where A_b (T x K)
// and D_b (T x N) are example b's rows. Then
//   out[b] = ||A_b^T D_b||_F^2 = sum_{t, u} (A_b A_b^T)[t, u] (D_b D_b^T)[t, u]   (Gram trick),
// computed either way, whichever is faster: the two T x T Grams (2 T^2 (K + N) flops, which run
// at about half the GEMM rate: short rows) or the K x N product (2 T K N). T = 1 (a 2-D Dense
// layer) is ||a_b||^2 ||d_b||^2.
// bias: also add the squared norm of the per-example gradient of a bias added on every row,
// ||sum_t D_b[t]||^2 (the sum of every entry of D_b D_b^T; with T = 1, ||d_b||^2), so a layer's
// kernel and bias norms come from one call.
// Example b's row t starts at a + b * a_ex + t * a_row (likewise d), so batch-major (B, T, K)
// arrays (a_ex = T K, a_row = K) and time-major (T, B, K) caches (a_ex = K, a_row = B K) are
// read in place. Rows of d that are zero contribute nothing (the LSTM's masked steps).
//
// embedding_per_example_sq_norms: the per-example gradient of an embedding table puts
// sum_{t: ids[b, t] = v} dy[b, t, :] in row v, so
//   out[b] = sum_v ||sum_{t: ids[b, t] = v} dy[b, t, :]||^2.
// Computed by sorting each example's T ids and summing runs of equal ids. ids (B, T) int32 or
// int64 in [0, V) (checked by the binding), dy (B, T, E).
//
// out (B) is overwritten; sums are accumulated in double. Threads: one OpenMP loop over
// examples (static schedule, each example's small products on one thread with gemm_serial) when
// the work is at least kGemmParallelFlops, else the calling thread; per-thread workspaces are
// allocated before the region. Results do not depend on the thread count.
//
// *_ref: plain loops (the direct K x N product; the O(T^2) pairwise sum over equal ids), one
// thread: the specification the fast routines are tested against.
#pragma once
#include "nanonet/runtime.hpp"

namespace nanonet {

struct PerExampleDims {
  index_t B, T, K, N;
  index_t a_ex, a_row;  // element strides of A between examples and between rows
  index_t d_ex, d_row;  // likewise for D
};

template <typename T>
void per_example_matmul_sq_norms(T* out, const T* a, const T* d, const PerExampleDims& dims,
                                 bool bias);

template <typename T>
void per_example_matmul_sq_norms_ref(T* out, const T* a, const T* d, const PerExampleDims& dims,
                                     bool bias);

template <typename T, typename I>
void embedding_per_example_sq_norms(T* out, const I* ids, const T* dy, index_t B, index_t T_,
                                    index_t E);

template <typename T, typename I>
void embedding_per_example_sq_norms_ref(T* out, const I* ids, const T* dy, index_t B, index_t T_,
                                        index_t E);

}  // namespace nanonet
