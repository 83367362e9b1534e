// gru and simple_rnn: whole sequences forward in one call, backward through time in one call.
//
// Dimension letters: B batch, T time, I input features, H hidden units, G = 3 H (GRU gate width;
// G = H for SimpleRNN). Keras 3 layouts and gate order (z, r, h): kernel (I, G),
// recurrent_kernel (H, G); columns [0, H) belong to the update gate z, [H, 2H) to the reset
// gate r, [2H, 3H) to the candidate h~.
//
// GRU forward, step k = 0 .. T-1 (processing order; t(k) = k, or T-1-k when go_backwards):
//   xd_k = x[:, t(k), :] * input_dropout_mask          (B, I)   mask (B, I) or 1
//   hd_k = h_k * recurrent_dropout_mask                (B, H)   mask (B, H) or 1
//   gx   = xd_k @ kernel + input_bias                  (B, G)   input_bias (G) or 0
//   reset_after (Keras default; bias (2, G) = [input_bias; recurrent_bias]):
//     gr = hd_k @ recurrent_kernel + recurrent_bias    (B, G)
//     z = ra(gx_z + gr_z),  r = ra(gx_r + gr_r),  hh = a(gx_h + r * gr_h)
//   not reset_after (bias (G) = input_bias, no recurrent bias):
//     z = ra(gx_z + hd_k @ rk_z),  r = ra(gx_r + hd_k @ rk_r),  hh = a(gx_h + (r * hd_k) @ rk_h)
//   h' = z * h_k + (1 - z) * hh      (h_k undropped, as Keras's GRUCell mixes it)
// SimpleRNN forward:  h' = a(xd_k @ kernel + bias + hd_k @ recurrent_kernel).
// Masks (both): where mask[b, t(k)] is false the row carries its state, h_{k+1} = h_k, and
// outputs it (Keras 3's RNN with zero_output_for_mask=False); y[:, k, :] = h_{k+1} in processing
// order (reversed when go_backwards, as Keras returns it); h_n = h_T; h_0 = h0 or 0. Dropout
// masks are per sequence (variational), hold 0 or 1 / (1 - rate), are drawn by the caller and
// shared by the gates.
//
// Activations are LstmAct (tanh, sigmoid, relu, linear); derivatives come from outputs.
//
// Backward, for L = sum(y * dy) + sum(h_n * dh_n), steps in reverse, dh = dy_k + gradient from
// step k+1; a masked row passes dh through to h_k and contributes nothing else. Valid rows:
//   GRU:  dhh = dh (1 - z) a'(hh);  dz = dh (h_k - hh) ra'(z);
//         reset_after: dgr_h = dhh r, dr = dhh gr_h ra'(r),
//                      dhd = [dz, dr, dgr_h] @ recurrent_kernel^T
//         else:        drh = dhh @ rk_h^T  (d(r * hd_k)),  dr = drh hd_k ra'(r),
//                      dhd = [dz, dr] @ rk_zr^T + drh r
//         dh_k = dh z + dhd * recurrent_dropout_mask
//   SimpleRNN: dpre = dh a'(h');  dh_k = (dpre @ recurrent_kernel^T) * recurrent_dropout_mask
// after the loop, over all T * B rows at once (one GEMM each):
//   dkernel = xd^T dgx (dgx = [dz, dr, dhh], SimpleRNN dpre), dx = dgx @ kernel^T * idm,
//   drecurrent_kernel: GRU reset_after hd^T [dz, dr, dgr_h]; not reset_after columns [0, 2H)
//   hd^T [dz, dr] and [2H, 3H) (r * hd)^T dhh; SimpleRNN hd^T dpre;
//   dbias: GRU reset_after (2, G) = [sum dgx; sum [dz, dr, dgr_h]], else (G) = sum dgx.
// Every backward output is overwritten.
//
// Shapes (row-major, contiguous): x (B, T, I); y (B, T, H); h0, h_n, dh0, dh_n (B, H); mask
// (B, T) uint8 (nonzero = valid); dy (B, T, H).
// Caches (RnnCache, written by a training forward, read by backward; time-major, processing
// order): xh (T, B, I + H) = [xd_k | hd_k]; h (T + 1, B, H) the states, [0] the initial one;
// gates (T, B, G) the activated z, r, hh (SimpleRNN: h' before masking); aux (T, B, H): GRU
// reset_after gr_h, not reset_after r * hd_k; unused (may be nullptr) for SimpleRNN.
// Masked rows of the caches hold values backward ignores.
//
// Threads: the input projection and the weight-gradient products are single multithreaded
// nanonet::gemm calls. The time loop runs in one OpenMP region of min(threads, B) row groups;
// each group computes the recurrent products of its own rows against the recurrent kernel
// packed once per call (backward: transposed): on AVX2 / AVX-512 CPUs (the lstm family's path)
// and B > kLstmGemvMaxBatch with rnn_detail's fused products, the LSTM's (recurrent_common.hpp),
// else with gemm_packed_serial; then its gate pass. A
// row's state depends on that row alone, so the groups never meet inside the loop (no
// barrier). Calls whose forward flops 2 B T (I + H) G are below kLstmParallelFlops run on the
// calling thread (see lstm.hpp). Every element is computed by the same operations whatever
// the grid (the bias gradients are column sums in row order, columns split over threads), so
// results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "nanonet/lstm.hpp"
#include "nanonet/runtime.hpp"

namespace nanonet {

enum class RnnCell : int { gru = 0, simple = 1 };

struct RnnDims {
  index_t B, T, I, H;
  RnnCell cell;
  bool reset_after;  // GRU only
  bool go_backwards;
  LstmAct activation, recurrent_activation;  // recurrent_activation: GRU only
};

inline index_t rnn_gate_width(const RnnDims& d) { return d.cell == RnnCell::gru ? 3 * d.H : d.H; }

template <typename T>
struct RnnInputs {
  const T* x;                       // (B, T, I); not read by backward
  const T* kernel;                  // (I, G)
  const T* recurrent_kernel;        // (H, G)
  const T* input_bias;              // (G) or nullptr
  const T* recurrent_bias;          // (G) or nullptr (GRU reset_after only)
  const T* h0;                      // (B, H) or nullptr: zeros; not read by backward
  const std::uint8_t* mask;         // (B, T) or nullptr
  const T* input_dropout_mask;      // (B, I) or nullptr
  const T* recurrent_dropout_mask;  // (B, H) or nullptr
};

template <typename T>
struct RnnCache {
  T* xh;     // (T, B, I + H)
  T* h;      // (T + 1, B, H)
  T* gates;  // (T, B, G)
  T* aux;    // (T, B, H), GRU only
};

// y (B, T, H) or nullptr; h_n (B, H) always written. cache nullptr for inference.
template <typename T>
void rnn_forward(T* y, T* h_n, const RnnCache<T>* cache, const RnnInputs<T>& in,
                 const RnnDims& d);

// dx (B, T, I) or nullptr, dkernel (I, G), drecurrent_kernel (H, G), dinput_bias (G) or
// nullptr, drecurrent_bias (G) or nullptr, dh0 (B, H): all overwritten. dy, dh_n may be nullptr.
template <typename T>
void rnn_backward(T* dx, T* dkernel, T* drecurrent_kernel, T* dinput_bias, T* drecurrent_bias,
                  T* dh0, const T* dy, const T* dh_n, const RnnCache<T>& cache,
                  const RnnInputs<T>& in, const RnnDims& d);

// rnn_backward without the weight-gradient products (DP-SGD forms them with per-example row
// scales): dgx (T, B, G) = [dz, dr, dhh] (SimpleRNN dpre) and, GRU reset_after only, dgr
// (T, B, G) = [dz, dr, dhh r] (else not written, may be nullptr), time-major in processing
// order, zero on masked rows; dx (B, T, I) or nullptr and dh0 (B, H) as rnn_backward. The
// weight gradients are the products of the backward comment with these. All overwritten.
template <typename T>
void rnn_backward_dz(T* dx, T* dgx, T* dgr, T* dh0, const T* dy, const T* dh_n,
                     const RnnCache<T>& cache, const RnnInputs<T>& in, const RnnDims& d);

}  // namespace nanonet
