#include "nanonet/gru.hpp"

#include <algorithm>
#include <cstring>

#include "nanonet/gemm.hpp"
#include "nanonet/recurrent_common.hpp"

namespace nanonet {

namespace {

using namespace rnn_detail;

// ---------------------------------------------------------------------------------------------
// Forward gate passes over rows [b0, b1) of one step. Pointers are to the step's slices.
template <typename T>
struct FwdPass {
  index_t H, G;
  LstmAct a, ra;
  bool reset_after;
  T* gates;             // (B, G) in: xd_k @ kernel; out: z, r, hh activated (SimpleRNN: h')
  const T* gr;          // (B, G) recurrent products: GRU reset_after and SimpleRNN hd_k @ rk;
                        // GRU otherwise [hd_k @ rk_zr | (r * hd_k) @ rk_h]
  T* aux;               // (B, H) GRU out: reset_after gr_h + br_h, else r * hd_k
  const T* bi;          // input bias (G) or nullptr
  const T* br;          // recurrent bias (G) or nullptr
  const T* h_prev;      // h_k (B, H)
  const T* hd;          // hd_k (row stride hd_ld)
  index_t hd_ld;
  T* h_out;             // h_{k+1} (B, H)
  T* y;                 // y + k H (row stride y_ld) or nullptr
  index_t y_ld;
  const std::uint8_t* mask;  // mask + t(k) (row stride mask_ld) or nullptr
  index_t mask_ld;
};

template <typename T>
NN_RNN_INLINE bool valid_row(const std::uint8_t* mask, index_t ld, index_t b) {
  return !mask || mask[b * ld] != 0;
}

// h_{k+1} = z h_k + (1 - z) hh for a valid row, h_k for a masked one; and the output.
template <typename T>
NN_RNN_INLINE void gru_blend(const FwdPass<T>& s, index_t b) {
  const index_t H = s.H;
  const T* g = s.gates + b * s.G;
  const T* hp = s.h_prev + b * H;
  T* ho = s.h_out + b * H;
  if (valid_row<T>(s.mask, s.mask_ld, b)) {
    const T* z = g;
    const T* hh = g + 2 * H;
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < H; ++j) ho[j] = z[j] * hp[j] + (T(1) - z[j]) * hh[j];
  } else {
    std::memcpy(ho, hp, size_t(H) * sizeof(T));
  }
  if (s.y) std::memcpy(s.y + b * s.y_ld, ho, size_t(H) * sizeof(T));
}

// GRU, first pass: z and r; reset_after also hh and h_{k+1}; otherwise aux = r * hd_k (the
// left operand of the candidate's recurrent product).
template <typename T>
NN_RNN_INLINE void gru_pass1_body(const FwdPass<T>& s, index_t b0, index_t b1) {
  const index_t H = s.H, G = s.G;
  for (index_t b = b0; b < b1; ++b) {
    T* g = s.gates + b * G;
    const T* gr = s.gr + b * G;
    for (int q = 0; q < 2; ++q) {  // z = ra(gx_z + bi_z + gr_z + br_z), r likewise
      T* v = g + q * H;
      const T* w = gr + q * H;
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) v[j] += w[j];
      if (s.bi) {
        const T* bq = s.bi + q * H;
        NN_PRAGMA_SIMD
        for (index_t j = 0; j < H; ++j) v[j] += bq[j];
      }
      if (s.br) {
        const T* bq = s.br + q * H;
        NN_PRAGMA_SIMD
        for (index_t j = 0; j < H; ++j) v[j] += bq[j];
      }
      act_span(s.ra, v, H);
    }
    const T* r = g + H;
    T* aux = s.aux + b * H;
    if (s.reset_after) {  // hh = a(gx_h + bi_h + r * (gr_h + br_h))
      T* hh = g + 2 * H;
      const T* grh = gr + 2 * H;
      if (s.br) {
        const T* bh = s.br + 2 * H;
        NN_PRAGMA_SIMD
        for (index_t j = 0; j < H; ++j) aux[j] = grh[j] + bh[j];
      } else {
        std::memcpy(aux, grh, size_t(H) * sizeof(T));
      }
      if (s.bi) {
        const T* bh = s.bi + 2 * H;
        NN_PRAGMA_SIMD
        for (index_t j = 0; j < H; ++j) hh[j] += bh[j];
      }
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) hh[j] += r[j] * aux[j];
      act_span(s.a, hh, H);
      gru_blend(s, b);
    } else {
      const T* hd = s.hd + b * s.hd_ld;
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) aux[j] = r[j] * hd[j];
    }
  }
}

// GRU without reset_after, second pass: hh = a(gx_h + bi_h + (r * hd_k) @ rk_h), h_{k+1}.
template <typename T>
NN_RNN_INLINE void gru_pass2_body(const FwdPass<T>& s, index_t b0, index_t b1) {
  const index_t H = s.H, G = s.G;
  for (index_t b = b0; b < b1; ++b) {
    T* hh = s.gates + b * G + 2 * H;
    const T* grh = s.gr + b * G + 2 * H;
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < H; ++j) hh[j] += grh[j];
    if (s.bi) {
      const T* bh = s.bi + 2 * H;
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) hh[j] += bh[j];
    }
    act_span(s.a, hh, H);
    gru_blend(s, b);
  }
}

// SimpleRNN: h' = a(gates + gr + bias) (gates: xd_k @ kernel, gr: hd_k @ recurrent_kernel),
// h_{k+1}, the output.
template <typename T>
NN_RNN_INLINE void simple_pass_body(const FwdPass<T>& s, index_t b0, index_t b1) {
  const index_t H = s.H;
  for (index_t b = b0; b < b1; ++b) {
    T* g = s.gates + b * H;
    const T* gr = s.gr + b * H;
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < H; ++j) g[j] += gr[j];
    if (s.bi) {
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) g[j] += s.bi[j];
    }
    act_span(s.a, g, H);
    const T* src = valid_row<T>(s.mask, s.mask_ld, b) ? g : s.h_prev + b * H;
    std::memcpy(s.h_out + b * H, src, size_t(H) * sizeof(T));
    if (s.y) std::memcpy(s.y + b * s.y_ld, src, size_t(H) * sizeof(T));
  }
}

// ---------------------------------------------------------------------------------------------
// Backward passes over rows [b0, b1) of one step.
template <typename T>
struct BwdPass {
  index_t H, G;
  LstmAct a, ra;
  bool reset_after;
  const T* gates;       // gates_k (B, G)
  const T* aux;         // aux_k (B, H)
  const T* h_prev;      // h_k (B, H)
  const T* hd;          // hd_k (row stride hd_ld)
  index_t hd_ld;
  const T* dy;          // dy + k H (row stride dy_ld) or nullptr
  index_t dy_ld;
  T* dh;                // (B, H) in: gradient reaching h_{k+1} from later steps; out: the part
                        // of the gradient reaching h_k that bypasses the recurrent product
  T* dgx;               // dgx_k (B, G) out: [dz, dr, dhh] (SimpleRNN dpre)
  T* dgr;               // dR_k (B, G) out (reset_after): [dz, dr, dhh r]
  const T* drh;         // (B, H) not reset_after, pass 2: dhh @ rk_h^T
  const std::uint8_t* mask;
  index_t mask_ld;
};

// dht = dh + dy_k into tmp (H).
template <typename T>
NN_RNN_INLINE void total_dh(const BwdPass<T>& s, index_t b, T* dht) {
  const T* dh = s.dh + b * s.H;
  if (s.dy) {
    const T* dy = s.dy + b * s.dy_ld;
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < s.H; ++j) dht[j] = dh[j] + dy[j];
  } else {
    std::memcpy(dht, dh, size_t(s.H) * sizeof(T));
  }
}

// GRU, first pass: dz, dhh (and reset_after dr, dR_k); dh <- dht z (valid) or dht (masked).
template <typename T>
NN_RNN_INLINE void gru_bwd1_body(const BwdPass<T>& s, index_t b0, index_t b1, T* dht) {
  const index_t H = s.H, G = s.G;
  for (index_t b = b0; b < b1; ++b) {
    total_dh(s, b, dht);
    T* dgx = s.dgx + b * G;
    T* dh = s.dh + b * H;
    if (!valid_row<T>(s.mask, s.mask_ld, b)) {
      std::fill(dgx, dgx + G, T(0));
      if (s.reset_after) std::fill(s.dgr + b * G, s.dgr + b * G + G, T(0));
      std::memcpy(dh, dht, size_t(H) * sizeof(T));
      continue;
    }
    const T* z = s.gates + b * G;
    const T* r = z + H;
    const T* hh = z + 2 * H;
    const T* hp = s.h_prev + b * H;
    T* dz = dgx;
    T* dr = dgx + H;
    T* dhh = dgx + 2 * H;
    // h' = z h + (1 - z) hh
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < H; ++j) {
      dz[j] = dht[j] * (hp[j] - hh[j]);
      dhh[j] = dht[j] * (T(1) - z[j]);
      dh[j] = dht[j] * z[j];
    }
    act_grad_span(s.ra, dz, z, H);
    act_grad_span(s.a, dhh, hh, H);
    if (s.reset_after) {
      // hh = a(gx_h + r * aux), aux = gr_h + br_h
      const T* aux = s.aux + b * H;
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) dr[j] = dhh[j] * aux[j];
      act_grad_span(s.ra, dr, r, H);
      T* dR = s.dgr + b * G;
      std::memcpy(dR, dgx, size_t(2 * H) * sizeof(T));
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) dR[2 * H + j] = dhh[j] * r[j];
    }
  }
}

// GRU without reset_after, second pass: dr = drh hd_k ra'(r)   (drh = d(r * hd_k)).
template <typename T>
NN_RNN_INLINE void gru_bwd2_body(const BwdPass<T>& s, index_t b0, index_t b1) {
  const index_t H = s.H, G = s.G;
  for (index_t b = b0; b < b1; ++b) {
    T* dr = s.dgx + b * G + H;
    if (!valid_row<T>(s.mask, s.mask_ld, b)) continue;  // already 0
    const T* r = s.gates + b * G + H;
    const T* hd = s.hd + b * s.hd_ld;
    const T* drh = s.drh + b * H;
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < H; ++j) dr[j] = drh[j] * hd[j];
    act_grad_span(s.ra, dr, r, H);
  }
}

// SimpleRNN: dpre = dht a'(h') (valid; dh <- 0) or 0 (masked; dh <- dht).
template <typename T>
NN_RNN_INLINE void simple_bwd_body(const BwdPass<T>& s, index_t b0, index_t b1, T* dht) {
  const index_t H = s.H;
  for (index_t b = b0; b < b1; ++b) {
    total_dh(s, b, dht);
    T* dp = s.dgx + b * H;
    T* dh = s.dh + b * H;
    if (!valid_row<T>(s.mask, s.mask_ld, b)) {
      std::fill(dp, dp + H, T(0));
      std::memcpy(dh, dht, size_t(H) * sizeof(T));
      continue;
    }
    std::memcpy(dp, dht, size_t(H) * sizeof(T));
    act_grad_span(s.a, dp, s.gates + b * H, H);
    std::fill(dh, dh + H, T(0));
  }
}

// dh[b] += (dhd[b] (+ drh[b] r[b])) * rdm[b] over rows [b0, b1); rdm, drh may be nullptr.
template <typename T>
NN_RNN_INLINE void add_dhd_body(T* dh, const T* dhd, const T* drh, const T* gates, index_t G,
                                const T* rdm, index_t H, index_t b0, index_t b1) {
  for (index_t b = b0; b < b1; ++b) {
    T* d = dh + b * H;
    const T* p = dhd + b * H;
    const T* m = rdm ? rdm + b * H : nullptr;
    if (drh) {
      const T* q = drh + b * H;
      const T* r = gates + b * G + H;
      if (m) {
        NN_PRAGMA_SIMD
        for (index_t j = 0; j < H; ++j) d[j] += (p[j] + q[j] * r[j]) * m[j];
      } else {
        NN_PRAGMA_SIMD
        for (index_t j = 0; j < H; ++j) d[j] += p[j] + q[j] * r[j];
      }
    } else if (m) {
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) d[j] += p[j] * m[j];
    } else {
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < H; ++j) d[j] += p[j];
    }
  }
}

// ISA clones, one per dtype (float64 without an AVX-512 copy: NN_ISA_CLONES_F64).
#define NN_RNN_CLONES(T, CLONES)                                                                \
  CLONES(void, gru_pass1, (const FwdPass<T>& s, index_t b0, index_t b1), (s, b0, b1),    \
                gru_pass1_body)                                                                 \
  CLONES(void, gru_pass2, (const FwdPass<T>& s, index_t b0, index_t b1), (s, b0, b1),    \
                gru_pass2_body)                                                                 \
  CLONES(void, simple_pass, (const FwdPass<T>& s, index_t b0, index_t b1), (s, b0, b1),  \
                simple_pass_body)                                                               \
  CLONES(void, gru_bwd1, (const BwdPass<T>& s, index_t b0, index_t b1, T* tmp),          \
                (s, b0, b1, tmp), gru_bwd1_body)                                                \
  CLONES(void, gru_bwd2, (const BwdPass<T>& s, index_t b0, index_t b1), (s, b0, b1),     \
                gru_bwd2_body)                                                                  \
  CLONES(void, simple_bwd, (const BwdPass<T>& s, index_t b0, index_t b1, T* tmp),        \
                (s, b0, b1, tmp), simple_bwd_body)                                              \
  CLONES(void, add_dhd,                                                                  \
                (T* dh, const T* dhd, const T* drh, const T* gates, index_t G, const T* rdm,    \
                 index_t H, index_t b0, index_t b1),                                            \
                (dh, dhd, drh, gates, G, rdm, H, b0, b1), add_dhd_body)
NN_RNN_CLONES(float, NN_ISA_CLONES)
NN_RNN_CLONES(double, NN_ISA_CLONES_F64)
#undef NN_RNN_CLONES

// ---------------------------------------------------------------------------------------------
bool serial_call(const RnnDims& d) {
  return 2.0 * double(d.B) * double(d.T) * double(d.I + d.H) * double(rnn_gate_width(d)) <
         kLstmParallelFlops;
}

int row_groups(const RnnDims& d, bool serial) {
  return serial ? 1 : int(std::max<index_t>(1, std::min<index_t>(get_num_threads(), d.B)));
}

// A recurrent product's right operand: packed for the fused products (rnn_detail, AVX2 /
// AVX-512) when fused_isa allows them, else for the GEMM driver.
template <typename T>
struct RecB {
  FusedB<T> f;
  PackedB<T> g;
};

// B = op(src) (K x N): src (K x N) with row stride ld, or transposed (src (N x K)).
template <typename T>
RecB<T> pack_rec(Isa fisa, bool trans, index_t K, index_t N, const T* src, index_t ld) {
  RecB<T> r;
  if (fisa != Isa::ref)
    r.f = trans ? pack_fused(fisa, src, 1, ld, K, N) : pack_fused(fisa, src, ld, 1, K, N);
  else
    r.g = pack_b<T>(trans, K, N, src, ld);
  return r;
}

// C[rows] = A[rows] @ B for rows [b0, b1): one thread's share of a recurrent product.
template <typename T>
void rows_product(const T* A, index_t lda, const RecB<T>& Bp, T* C, index_t ldc, index_t b0,
                  index_t b1) {
  if (b1 <= b0) return;
  if (Bp.f.W)
    fused_product(Bp.f, A + b0 * lda, lda, b1 - b0, 0, Bp.f.N, C + b0 * ldc, ldc);
  else
    gemm_packed_serial<T>(false, b1 - b0, T(1), A + b0 * lda, lda, Bp.g, 0, Bp.g.panels(), T(0),
                          C + b0 * ldc, ldc);
}

// out[g] = sum over the n rows of m[row, g] (row stride ld), g < w: columns split over threads.
template <typename T>
void column_sums(T* out, const T* m, index_t n, index_t w, index_t ld, bool serial) {
  const int nt = serial ? 1 : get_num_threads();
  // Each thread sweeps the rows for its own block of columns: every sum in row order.
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = thread_id();
    const index_t g0 = w * tid / nt, g1 = w * (tid + 1) / nt;
    std::fill(out + g0, out + g1, T(0));
    for (index_t row = 0; row < n; ++row) {
      const T* m_r = m + row * ld;
      for (index_t g = g0; g < g1; ++g) out[g] += m_r[g];
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
template <typename T>
void rnn_forward(T* y, T* h_n, const RnnCache<T>* cache, const RnnInputs<T>& in,
                 const RnnDims& d) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = rnn_gate_width(d);
  const bool train = cache != nullptr, gru = d.cell == RnnCell::gru;
  const T* rdm = in.recurrent_dropout_mask;
  const index_t XH = I + H;

  // Input projection of all T * B rows at once: gates = xd @ kernel (biases join per step).
  std::unique_ptr<Scratch<T>> xd_s, gates_s;
  T* xd = train ? cache->xh : (xd_s.reset(new Scratch<T>(size_t(TT * B * I))), xd_s->get());
  const index_t ldxd = train ? XH : I;
  T* gates = train ? cache->gates
                   : (gates_s.reset(new Scratch<T>(size_t(TT * B * G))), gates_s->get());
  gather_inputs(xd, ldxd, in.x, in.input_dropout_mask, B, TT, I, d.go_backwards);
  const bool serial = serial_call(d);
  call_gemm<T>(serial, false, false, TT * B, G, I, xd, ldxd, in.kernel, G, gates, G);

  // States: all T + 1 slices when training, else a ring of two. hd_k: in xh when training,
  // else (with recurrent dropout) one slice reused per step; aux likewise.
  Scratch<T> ring(train ? 1 : size_t(2 * B * H));
  auto hslot = [&](index_t k) { return train ? cache->h + k * B * H : ring.get() + (k & 1) * B * H; };
  Scratch<T> hd_s(train || !rdm ? 1 : size_t(B * H));
  Scratch<T> aux_s(train || !gru ? 1 : size_t(B * H));
  Scratch<T> gr(size_t(B * G));
  copy_or_zero(hslot(0), in.h0, B * H);

  RecB<T> p_all, p_h;  // forward products: [rk] or [rk_zr] and [rk_h]
  const Isa fisa = fused_isa(B);
  if (gru && !d.reset_after) {
    p_all = pack_rec(fisa, false, H, 2 * H, in.recurrent_kernel, G);
    p_h = pack_rec(fisa, false, H, H, in.recurrent_kernel + 2 * H, G);
  } else {
    p_all = pack_rec(fisa, false, H, G, in.recurrent_kernel, G);
  }
  const int nt = row_groups(d, serial);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = thread_id();
    const index_t b0 = B * tid / nt, b1 = B * (tid + 1) / nt;
    FwdPass<T> s{};
    s.H = H;
    s.G = G;
    s.a = d.activation;
    s.ra = d.recurrent_activation;
    s.reset_after = d.reset_after;
    s.gr = gr.get();
    s.bi = in.input_bias;
    s.br = in.recurrent_bias;
    s.y_ld = TT * H;
    s.mask_ld = TT;
    for (index_t k = 0; k < TT; ++k) {
      const index_t t = d.go_backwards ? TT - 1 - k : k;
      const T* hp = hslot(k);
      // hd_k = h_k * rdm (kept in xh when training)
      T* hd = train ? cache->xh + k * B * XH + I : (rdm ? hd_s.get() : const_cast<T*>(hp));
      const index_t hd_ld = train ? XH : H;
      if (train || rdm) {
        for (index_t b = b0; b < b1; ++b) {
          T* dst = hd + b * hd_ld;
          const T* src = hp + b * H;
          if (rdm) {
            const T* m = rdm + b * H;
            for (index_t j = 0; j < H; ++j) dst[j] = src[j] * m[j];
          } else {
            std::memcpy(dst, src, size_t(H) * sizeof(T));
          }
        }
      }
      s.gates = gates + k * B * G;
      s.aux = train && gru ? cache->aux + k * B * H : aux_s.get();
      s.h_prev = hp;
      s.hd = hd;
      s.hd_ld = hd_ld;
      s.h_out = hslot(k + 1);
      s.y = y ? y + k * H : nullptr;
      s.mask = in.mask ? in.mask + t : nullptr;
      rows_product(hd, hd_ld, p_all, gr.get(), G, b0, b1);
      if (!gru) {
        simple_pass(s, b0, b1);
      } else {
        gru_pass1(s, b0, b1);
        if (!d.reset_after) {
          rows_product(s.aux, H, p_h, gr.get() + 2 * H, G, b0, b1);
          gru_pass2(s, b0, b1);
        }
      }
    }
  }
  std::memcpy(h_n, hslot(TT), size_t(B * H) * sizeof(T));
}

// ---------------------------------------------------------------------------------------------
// The time loop of backward: fills dgx (T, B, G) and, GRU reset_after, dgr (T, B, G); dh0.
template <typename T>
void backward_steps(T* dgx_all, T* dgr_all, T* dh0, const T* dy, const T* dh_n,
                    const RnnCache<T>& cache, const RnnInputs<T>& in, const RnnDims& d,
                    bool serial) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = rnn_gate_width(d);
  const bool gru = d.cell == RnnCell::gru, ra = gru && d.reset_after, rb = gru && !d.reset_after;
  const T* rdm = in.recurrent_dropout_mask;
  const index_t XH = I + H;
  copy_or_zero(dh0, dh_n, B * H);  // dh0 carries the running gradient reaching h_k

  // Transposed recurrent products: dR_k @ rk^T (GRU reset_after), dpre @ rk^T (SimpleRNN),
  // [dz, dr] @ rk_zr^T and dhh @ rk_h^T (GRU otherwise).
  RecB<T> p_all, p_h;
  const Isa fisa = fused_isa(B);
  if (rb) {
    p_all = pack_rec(fisa, true, 2 * H, H, in.recurrent_kernel, G);
    p_h = pack_rec(fisa, true, H, H, in.recurrent_kernel + 2 * H, G);
  } else {
    p_all = pack_rec(fisa, true, G, H, in.recurrent_kernel, G);
  }
  Scratch<T> dhd(size_t(B * H));
  Scratch<T> drh(rb ? size_t(B * H) : 1);
  const int nt = row_groups(d, serial);
  Scratch<T> tmp(size_t(nt) * size_t(H));

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = thread_id();
    const index_t b0 = B * tid / nt, b1 = B * (tid + 1) / nt;
    T* dht = tmp.get() + tid * H;
    BwdPass<T> s{};
    s.H = H;
    s.G = G;
    s.a = d.activation;
    s.ra = d.recurrent_activation;
    s.reset_after = d.reset_after;
    s.hd_ld = XH;
    s.dy_ld = TT * H;
    s.dh = dh0;
    s.drh = drh.get();
    s.mask_ld = TT;
    for (index_t k = TT - 1; k >= 0; --k) {
      const index_t t = d.go_backwards ? TT - 1 - k : k;
      s.gates = cache.gates + k * B * G;
      s.aux = gru ? cache.aux + k * B * H : nullptr;
      s.h_prev = cache.h + k * B * H;
      s.hd = cache.xh + k * B * XH + I;
      s.dy = dy ? dy + k * H : nullptr;
      s.dgx = dgx_all + k * B * G;
      s.dgr = ra ? dgr_all + k * B * G : nullptr;
      s.mask = in.mask ? in.mask + t : nullptr;
      if (!gru) {
        simple_bwd(s, b0, b1, dht);
        rows_product(s.dgx, G, p_all, dhd.get(), H, b0, b1);
        add_dhd(dh0, dhd.get(), static_cast<const T*>(nullptr), s.gates, G, rdm, H, b0, b1);
      } else if (ra) {
        gru_bwd1(s, b0, b1, dht);
        rows_product(s.dgr, G, p_all, dhd.get(), H, b0, b1);
        add_dhd(dh0, dhd.get(), static_cast<const T*>(nullptr), s.gates, G, rdm, H, b0, b1);
      } else {
        gru_bwd1(s, b0, b1, dht);
        rows_product(s.dgx + 2 * H, G, p_h, drh.get(), H, b0, b1);
        gru_bwd2(s, b0, b1);
        rows_product(s.dgx, G, p_all, dhd.get(), H, b0, b1);
        add_dhd(dh0, dhd.get(), static_cast<const T*>(drh.get()), s.gates, G, rdm, H, b0, b1);
      }
    }
  }

}

// dx from dgx over all T * B rows at once (one GEMM).
template <typename T>
void backward_input_grads(T* dx, const T* dgx, const RnnInputs<T>& in, const RnnDims& d,
                          bool serial) {
  const index_t R = d.T * d.B, I = d.I, G = rnn_gate_width(d);
  Scratch<T> dxt(size_t(R * I));
  call_gemm<T>(serial, false, true, R, I, G, dgx, G, in.kernel, G, dxt.get(), I);
  scatter_input_grads(dx, dxt.get(), in.input_dropout_mask, d.B, d.T, I, d.go_backwards);
}

template <typename T>
void rnn_backward(T* dx, T* dkernel, T* drecurrent_kernel, T* dinput_bias, T* drecurrent_bias,
                  T* dh0, const T* dy, const T* dh_n, const RnnCache<T>& cache,
                  const RnnInputs<T>& in, const RnnDims& d) {
  const index_t B = d.B, TT = d.T, I = d.I, H = d.H, G = rnn_gate_width(d);
  const bool gru = d.cell == RnnCell::gru, ra = gru && d.reset_after, rb = gru && !d.reset_after;
  const index_t XH = I + H;
  const bool serial = serial_call(d);
  Scratch<T> dgx(size_t(TT * B * G));
  Scratch<T> dgr(ra ? size_t(TT * B * G) : 1);
  backward_steps(dgx.get(), ra ? dgr.get() : static_cast<T*>(nullptr), dh0, dy, dh_n, cache, in,
                 d, serial);

  // Weight gradients over all T * B rows at once.
  const index_t R = TT * B;
  call_gemm<T>(serial, true, false, I, G, R, cache.xh, XH, dgx.get(), G, dkernel, G);
  if (ra) {
    call_gemm<T>(serial, true, false, H, G, R, cache.xh + I, XH, dgr.get(), G, drecurrent_kernel,
                 G);
  } else if (rb) {
    // columns [0, 2H): hd^T [dz, dr]; [2H, 3H): (r * hd)^T dhh
    call_gemm<T>(serial, true, false, H, 2 * H, R, cache.xh + I, XH, dgx.get(), G,
                 drecurrent_kernel, G);
    call_gemm<T>(serial, true, false, H, H, R, cache.aux, H, dgx.get() + 2 * H, G,
                 drecurrent_kernel + 2 * H, G);
  } else {
    call_gemm<T>(serial, true, false, H, G, R, cache.xh + I, XH, dgx.get(), G, drecurrent_kernel,
                 G);
  }
  if (dinput_bias) column_sums(dinput_bias, dgx.get(), R, G, G, serial);
  if (drecurrent_bias && ra) column_sums(drecurrent_bias, dgr.get(), R, G, G, serial);
  if (dx) backward_input_grads(dx, dgx.get(), in, d, serial);
}

template <typename T>
void rnn_backward_dz(T* dx, T* dgx, T* dgr, T* dh0, const T* dy, const T* dh_n,
                     const RnnCache<T>& cache, const RnnInputs<T>& in, const RnnDims& d) {
  const bool serial = serial_call(d);
  backward_steps(dgx, d.cell == RnnCell::gru && d.reset_after ? dgr : static_cast<T*>(nullptr),
                 dh0, dy, dh_n, cache, in, d, serial);
  if (dx) backward_input_grads(dx, static_cast<const T*>(dgx), in, d, serial);
}

#define NN_RNN_INSTANTIATE(T)                                                                  \
  template void rnn_forward<T>(T*, T*, const RnnCache<T>*, const RnnInputs<T>&,                \
                               const RnnDims&);                                                \
  template void rnn_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const RnnCache<T>&, \
                                const RnnInputs<T>&, const RnnDims&);                  \
  template void rnn_backward_dz<T>(T*, T*, T*, T*, const T*, const T*, const RnnCache<T>&,     \
                                   const RnnInputs<T>&, const RnnDims&);
NN_RNN_INSTANTIATE(float)
NN_RNN_INSTANTIATE(double)
#undef NN_RNN_INSTANTIATE

}  // namespace nanonet
