// lstm: a whole sequence forward in one call, and backward through time in one call.
//
// Dimension letters: B batch, T time, I input features, H hidden units, G = 4 * H gate width.
// Keras layout and gate order (i, f, c~, o): kernel (I, G), recurrent_kernel (H, G), bias (G);
// the columns [0, H) of G belong to gate i, [H, 2H) to f, [2H, 3H) to c~, [3H, 4H) to o.
//
// Forward, step k = 0 .. T-1 (processing order; t(k) = k, or T-1-k when go_backwards):
//   xd_k  = x[:, t(k), :] * input_dropout_mask                      (B, I)  mask: (B, I) or 1
//   hd_k  = h_k * recurrent_dropout_mask                            (B, H)  mask: (B, H) or 1
//   z     = xd_k @ kernel + hd_k @ recurrent_kernel + bias          (B, G)
//   i = ra(z_i), f = ra(z_f), g = a(z_c), o = ra(z_o)               a = activation,
//   c'    = f * c_k + i * g                                         ra = recurrent_activation
//   h'    = o * a(c')
//   where mask[b, t(k)] is false (a masked step) the state is carried: c_{k+1} = c_k and
//   h_{k+1} = h_k for that row; otherwise c_{k+1} = c', h_{k+1} = h'.
//   y[:, k, :] = h_{k+1}  (return_sequences; processing order, so reversed when go_backwards, as
//   Keras returns it); h_n = h_T, c_n = c_T; h_0 = h0 (or 0), c_0 = c0 (or 0).
// A masked step outputs the carried state (Keras 3 RNN with zero_output_for_mask=False, as LSTM
// uses it), so with pre-padding and an initial state the leading outputs are h0. A row whose
// every step is masked returns h0, c0. Dropout masks are per sequence (Gal & Ghahramani): one
// (B, I) mask for the inputs and one (B, H) mask for h in the recurrent product, reused at every
// step and shared by the four gates; they hold 0 or 1 / (1 - rate) and are drawn by the caller.
//
// Activations (LstmAct): tanh, sigmoid, relu (max(x, 0)), linear. Every derivative is taken
// from the activation's output (1 - y^2, y (1 - y), y > 0, 1), so backward needs only caches.
//
// Backward, for the gradient of L = sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n), steps in
// reverse, dh = dy[:, k, :] + (gradient from step k+1), dc likewise:
//   valid row:  do = dh * a(c'),  dc += dh * o * a'(c'),
//               di = dc * g, dg = dc * i, df = dc * c_k, dc_k = dc * f,
//               dz = (di ra'(i), df ra'(f), dg a'(g), do ra'(o)),
//               dh_k = (dz @ recurrent_kernel^T) * recurrent_dropout_mask
//   masked row: dz = 0, dh_k = dh, dc_k = dc
// and after the loop, over all steps at once (single GEMMs over T * B rows):
//   dkernel = xd^T dz,  drecurrent_kernel = hd^T dz,  dbias = sum over rows of dz,
//   dx[:, t(k), :] = (dz_k @ kernel^T) * input_dropout_mask,  dh0 = dh_0, dc0 = dc_0.
// Every backward output is overwritten (nothing accumulates).
//
// Shapes (row-major, contiguous): x (B, T, I); y (B, T, H); h0, c0, h_n, c_n, dh0, dc0, dh_n,
// dc_n (B, H); mask (B, T) as uint8 (nonzero = valid step); dy (B, T, H).
// Caches (LstmCache, written by a training forward, read by backward; time-major, processing
// order): xh (T, B, I + H) holds, side by side, the dropped input xd_k and the recurrent
// product's left operand hd_k (= h_k * recurrent_dropout_mask, or h_k), so one GEMM
// [xd | hd]^T dz gives dkernel and drecurrent_kernel stacked; gates (T, B, G) i, f, g, o after
// their activations; c (T+1, B, H) the cell states, [0] the initial one; ac (T, B, H) =
// a(c_{k+1}). Rows of masked steps hold values backward ignores.
// A forward without a cache (inference) keeps only two time slices of state.
//
// Threads: the input projection and the weight-gradient product are single multithreaded
// nanonet::gemm calls (one GEMM for dkernel and drecurrent_kernel when the caller allocates
// them adjacent, drecurrent_kernel == dkernel + I * G, as the binding does; else two). The time loop runs in ONE OpenMP parallel region: threads form a grid of
// pb row groups (batch rows) x pu unit groups (hidden units, a multiple of the micro-kernel's NR
// wide). Each thread computes its tile of the recurrent product with gemm_packed_serial against
// recurrent_kernel packed once per call (forward: columns permuted so a unit group's four gates
// are adjacent; backward: recurrent_kernel^T), then its tile of the fused gate pass. With one
// unit group (B >= threads) the row groups never share data and there is no barrier; with
// several, one barrier per step. On AVX2 and AVX-512 CPUs (the lstm family's path) the
// recurrent products skip the GEMM driver: rnn_detail's fused products (recurrent_common.hpp)
// read h_k (forward) or dz_k (backward) in place against recurrent_kernel (its columns
// permuted as above with several unit groups, which are then whole vectors of units wide) or
// recurrent_kernel^T packed once per call, a register-blocked tile of 3 rows (AVX2) or 4 rows
// (AVX-512) x 4 vectors; the gate pass is unchanged.
// Elsewhere (non-x86, NANONET_ISA=ref) both use the GEMM-driver path above. For
// B <= kLstmGemvMaxBatch (batch-1 inference) the recurrent product is a vector-matrix product
// per row instead (a GEMM micro-kernel would compute MR - 1 rows of padding), reading
// recurrent_kernel in place (forward) or transposed once (backward).
// Each element is computed by the same operations whatever the grid, so results do not depend
// on the thread count, except dbias (per-thread partial sums, added in thread order: float
// rounding only).
// The rule for small work. Calls below kLstmParallelFlops run entirely on one thread, their
// GEMMs included (gemm_serial): with libgomp's default spinning, a 2-thread region on 2 cores
// that another process also uses costs milliseconds when the partner thread is descheduled
// (measured, busy machine: the batch-1 showcase layer 0.62 ms on 1 thread, 12-16 ms on 2).
// A short spin (GOMP_SPINCOUNT=1000) cures that but made the 2-thread training step ~1.5x
// slower, so the spin policy is left to the user and small calls avoid teams. A per-step barrier is worth ~1 us on idle cores but a whole time
// slice (milliseconds) when another process holds a core and the waiting thread's partner is
// descheduled (measured: batch-1 inference, 2 threads on 2 busy cores, 3-10x slower than 1
// thread). So unit groups (the only grids with a per-step barrier) are used only when one step
// is at least kLstmBarrierStepFlops (~35 us of work); below that the threads are
// min(threads, B) row groups, which meet only at the end of the call, and B = 1 runs on one
// thread.
//
// *_ref: plain scalar loops (std::exp / std::tanh, gemm_ref-style dot products, one thread),
// same arguments and caches: the specification the fast path is tested against.
#pragma once
#include <cstdint>
#include <string>

#include "nanonet/runtime.hpp"

namespace nanonet {

enum class LstmAct : int { tanh = 0, sigmoid = 1, relu = 2, linear = 3 };

// "tanh", "sigmoid", "relu", "linear"; anything else throws std::invalid_argument naming `fn`,
// `arg`, the bad name and the valid ones.
LstmAct lstm_act_from_name(const std::string& name, const char* fn, const char* arg);

// Forward flops of a call, 2 B T (I + H) G, below which the WHOLE call (time loop and GEMMs)
// runs on the calling thread: ~1.5 ms of work (showcase layer: B <= 4 at T = 100).
constexpr double kLstmParallelFlops = 1.2e8;
// Per-step recurrent flops (2 B H G) below which the grid has one unit group (no per-step
// barrier): threads = min(threads, B). See "Threads" above.
constexpr double kLstmBarrierStepFlops = 4.0e6;
constexpr index_t kLstmGemvMaxBatch = 2;      // B at most this: row products, not the GEMM

struct LstmDims {
  index_t B, T, I, H;
  bool go_backwards;
  LstmAct activation, recurrent_activation;
};

template <typename T>
struct LstmInputs {
  const T* x;                       // (B, T, I); not read by backward
  const T* kernel;                  // (I, G)
  const T* recurrent_kernel;        // (H, G)
  const T* bias;                    // (G) or nullptr: no bias
  const T* h0;                      // (B, H) or nullptr: zeros; not read by backward
  const T* c0;                      // (B, H) or nullptr: zeros; not read by backward
  const std::uint8_t* mask;         // (B, T) or nullptr: every step valid
  const T* input_dropout_mask;      // (B, I) or nullptr
  const T* recurrent_dropout_mask;  // (B, H) or nullptr
};

template <typename T>
struct LstmCache {
  T* xh;     // (T, B, I + H): [xd_k | hd_k]
  T* gates;  // (T, B, G)
  T* c;      // (T + 1, B, H)
  T* ac;     // (T, B, H)
};

// y (B, T, H) or nullptr (not wanted); h_n, c_n (B, H) always written. cache: nullptr for
// inference (nothing kept for backward), else every cache array is written.
template <typename T>
void lstm_forward(T* y, T* h_n, T* c_n, const LstmCache<T>* cache, const LstmInputs<T>& in,
                  const LstmDims& d);

// dx (B, T, I) or nullptr (not wanted), dkernel (I, G), drecurrent_kernel (H, G), dbias (G) or
// nullptr, dh0, dc0 (B, H): all overwritten. dy (B, T, H), dh_n, dc_n (B, H): each may be nullptr (zero). The cache and
// in (kernel, recurrent_kernel, mask, dropout masks) must be those of the forward call.
template <typename T>
void lstm_backward(T* dx, T* dkernel, T* drecurrent_kernel, T* dbias, T* dh0, T* dc0,
                   const T* dy, const T* dh_n, const T* dc_n, const LstmCache<T>& cache,
                   const LstmInputs<T>& in, const LstmDims& d);

// lstm_backward keeping the gate gradients for DP-SGD (per_example.hpp): dz (T, B, G), time-major
// in processing order, overwritten (rows of masked steps are zero); no weight gradients are
// formed (the caller forms xh^T dz with per-example row scales). dx, dh0, dc0 as above.
template <typename T>
void lstm_backward_dz(T* dx, T* dz, T* dh0, T* dc0, const T* dy, const T* dh_n, const T* dc_n,
                      const LstmCache<T>& cache, const LstmInputs<T>& in, const LstmDims& d);

template <typename T>
void lstm_forward_ref(T* y, T* h_n, T* c_n, const LstmCache<T>* cache, const LstmInputs<T>& in,
                      const LstmDims& d);

template <typename T>
void lstm_backward_ref(T* dx, T* dkernel, T* drecurrent_kernel, T* dbias, T* dh0, T* dc0,
                       const T* dy, const T* dh_n, const T* dc_n, const LstmCache<T>& cache,
                       const LstmInputs<T>& in, const LstmDims& d);

}  // namespace nanonet
