// attention: scaled dot-product attention over (batch, heads), forward and backward, computed in
// tiles with an online softmax (the flash-attention scheme): the Tq x Tk score matrix is never
// stored whole, only one BQ x BK tile of it per thread at a time.
//
// Dimension letters: B batch, H heads, Tq query steps, Tk key steps, D query/key width, Dv value
// width. S is float or double; every sum runs in S.
//
// Layout (row-major, contiguous): q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv),
// out (B, H, Tq, Dv), lse (B, H, Tq), and their gradients dq, dk, dv, dout of the same shapes.
// Heads are the second axis so that one (b, h) pair's rows are one contiguous block: each pair
// is an independent problem, and a tile of rows is a contiguous slab.
// mask: bool (B, MQ, Tk) with MQ == 1 (a key-padding mask, the same for every query) or MQ == Tq
// (a full attention mask, e.g. Keras's attention_mask combined with a query mask), shared by the
// heads; null means every key counts. True = the key may be attended to.
//
// Forward, for each (b, h) and query row i:
//   valid_ij = mask[b, MQ == 1 ? 0 : i, j] && (!causal || j <= i)     (causal: top-left aligned,
//              as Keras's use_causal_mask and torch's is_causal)
//   s_ij = scale * q_i . k_j  where valid, -inf elsewhere
//   lse_i = log sum_j exp(s_ij);  p_ij = exp(s_ij - lse_i);  out_i = sum_j p_ij v_j
// A row with no valid key (fully masked) gives out_i = 0 and lse_i = -inf, never NaN.
// Online softmax per query tile: for each key tile, m' = max(m, max_j s_ij), acc and l rescaled
// by exp(m - m'), acc += exp(s - m') v, l += sum exp(s - m'); out = acc / l, lse = m + log l.
//
// Backward (given dout, the forward's out and lse; the scores are recomputed tile by tile):
//   D_i = dout_i . out_i;  dp_ij = dout_i . v_j;  ds_ij = p_ij (dp_ij - D_i)
//   dv_j = sum_i p_ij dout_i;  dk_j = scale sum_i ds_ij q_i;  dq_i = scale sum_j ds_ij k_j
// A fully masked row (lse_i = -inf) has p_i = 0 and so contributes nothing, and gets dq_i = 0.
//
// Overwrite vs accumulate: out, lse, dq, dk, dv are all overwritten (zeros included).
// Caches: lse is the only thing the forward keeps for the backward (besides out).
//
// Threads: the forward splits (b, h, query tile) items, static schedule. The backward splits
// (b, h) pairs when there are at least as many as threads (each pair computes its dq, dk, dv in
// one sweep over the tiles); otherwise it runs two sweeps, (b, h, key tile) items computing dk, dv
// and then (b, h, query tile) items computing dq. Both schemes add the same tile products in the
// same order, so results are bit-identical for any thread count. Problems below about 2 MFLOP
// stay on the calling thread. Workspace per thread: the current pair's K^T (D, Tk) (and V^T
// (Dv, Tk) in the backward), transposed once per pair so the tile products read contiguous key
// columns, and two or three BQ x BK tiles; plus D (B * H * Tq) in the backward. Nothing grows
// with Tq * Tk.
//
// The *_ref twins are plain serial loops, row by row (one Tk-long score row at a time).
#pragma once
#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kAttnBlockQ = 16;  // BQ: query rows per tile
constexpr index_t kAttnBlockK = 128;  // BK: key rows per tile (16 x 128 measured best on AVX2)

// Element strides (batch, head, step) of an input; its feature axis is contiguous. The fast
// kernels take them for q, k, v (and dout), so a caller may pass views such as the heads of a
// (B, T, H * D) projection without copying them to (B, H, T, D); nullptr: C-contiguous
// (B, H, T, D). The outputs are always C-contiguous, and the _ref twins take contiguous inputs.
struct AttnStrides {
  index_t b, h, t;
};

template <typename S>
void attention_forward(S* out, S* lse, const S* q, const S* k, const S* v, const bool* mask,
                       index_t mask_rows, bool causal, S scale, index_t B, index_t H, index_t Tq,
                       index_t Tk, index_t D, index_t Dv, const AttnStrides* qkv = nullptr);
template <typename S>
void attention_forward_ref(S* out, S* lse, const S* q, const S* k, const S* v, const bool* mask,
                           index_t mask_rows, bool causal, S scale, index_t B, index_t H,
                           index_t Tq, index_t Tk, index_t D, index_t Dv);

template <typename S>
void attention_backward(S* dq, S* dk, S* dv, const S* dout, const S* q, const S* k, const S* v,
                        const S* out, const S* lse, const bool* mask, index_t mask_rows,
                        bool causal, S scale, index_t B, index_t H, index_t Tq, index_t Tk,
                        index_t D, index_t Dv, const AttnStrides* qkvdo = nullptr);
template <typename S>
void attention_backward_ref(S* dq, S* dk, S* dv, const S* dout, const S* q, const S* k,
                            const S* v, const S* out, const S* lse, const bool* mask,
                            index_t mask_rows, bool causal, S scale, index_t B, index_t H,
                            index_t Tq, index_t Tk, index_t D, index_t Dv);

}  // namespace nanonet
