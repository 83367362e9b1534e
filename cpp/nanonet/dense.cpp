#include "nanonet/dense.hpp"

#include <algorithm>

#include "nanonet/gemm.hpp"
#include "nanonet/vecmath.hpp"

namespace nanonet {

namespace {

// GEMM epilogue: bias add + elementwise activation on one finished block of y.
template <typename T>
struct DenseEpilogueCtx {
  const T* bias;   // (H) or null
  Activation act;  // elementwise (softmax is applied after the GEMM)
  T* z;            // (B, H) pre-activation out, or null
  index_t H;
};

template <typename T>
void dense_epilogue(T* c, index_t ldc, index_t m, index_t n, index_t row0, index_t col0,
                    const void* ctx) {
  const auto* e = static_cast<const DenseEpilogueCtx<T>*>(ctx);
  T* z_blk = e->z ? e->z + row0 * e->H + col0 : nullptr;
  bias_activation_block(c, ldc, m, n, e->bias ? e->bias + col0 : nullptr, e->act, z_blk, e->H);
}

// Columns [h0, h1) of dbias = sum over the B rows of dz (B, H), rows in order.
template <typename T>
inline void col_sums_body(T* dbias, const T* dz, index_t B, index_t H, index_t h0, index_t h1) {
  T* __restrict db = dbias + h0;
  const index_t n = h1 - h0;
  for (index_t j = 0; j < n; ++j) db[j] = T(0);
  for (index_t b = 0; b < B; ++b) {
    const T* __restrict dz_b = dz + b * H + h0;
    for (index_t j = 0; j < n; ++j) db[j] += dz_b[j];
  }
}

NN_ISA_CLONES(void, col_sums,
              (float* dbias, const float* dz, index_t B, index_t H, index_t h0, index_t h1),
              (dbias, dz, B, H, h0, h1), col_sums_body)
NN_ISA_CLONES_F64(void, col_sums,
              (double* dbias, const double* dz, index_t B, index_t H, index_t h0, index_t h1),
              (dbias, dz, B, H, h0, h1), col_sums_body)

// Fused pass over columns [h0, h1): dz = f'(y) dy row by row, and dbias += dz.
template <typename T>
inline void dz_dbias_body(T* dbias, T* dz, const T* dy, const T* y, const T* z, index_t B,
                          index_t H, index_t h0, index_t h1, Activation act) {
  T* __restrict db = dbias + h0;
  const index_t n = h1 - h0;
  for (index_t j = 0; j < n; ++j) db[j] = T(0);
  for (index_t b = 0; b < B; ++b) {
    T* dz_b = dz + b * H + h0;
    activation_backward_span(dz_b, dy + b * H + h0, y + b * H + h0,
                             z ? z + b * H + h0 : nullptr, n, act);
    const T* __restrict dzr = dz_b;
    for (index_t j = 0; j < n; ++j) db[j] += dzr[j];
  }
}

NN_ISA_CLONES(void, dz_dbias, (float* dbias, float* dz, const float* dy, const float* y,
               const float* z, index_t B, index_t H, index_t h0, index_t h1, Activation act),
              (dbias, dz, dy, y, z, B, H, h0, h1, act), dz_dbias_body)
NN_ISA_CLONES_F64(void, dz_dbias, (double* dbias, double* dz, const double* dy, const double* y,
               const double* z, index_t B, index_t H, index_t h0, index_t h1, Activation act),
              (dbias, dz, dy, y, z, B, H, h0, h1, act), dz_dbias_body)

constexpr index_t kColAlign = 64;  // columns per chunk boundary (a few cache lines)

}  // namespace

// ---------------------------------------------------------------------------------------------

template <typename T>
void dense_forward(T* y, T* z, const T* x, const T* kernel, const T* bias, index_t B, index_t I,
                   index_t H, Activation act) {
  if (B <= 0 || H <= 0) return;
  const bool rowwise = activation_is_rowwise(act);
  DenseEpilogueCtx<T> ctx{bias, rowwise ? Activation::linear : act, z, H};
  GemmEpilogue<T> epi{dense_epilogue<T>, &ctx};
  const bool need_epi = bias != nullptr || ctx.act != Activation::linear || z != nullptr;
  // z = x kernel (+ bias, f in the epilogue)
  gemm<T>(false, false, B, H, I, T(1), x, std::max<index_t>(I, 1), kernel, H, T(0), y, H,
          need_epi ? &epi : nullptr);
  if (rowwise) activation_forward(y, y, B, H, act);  // softmax per row, in place
}

template <typename T>
void dense_backward(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                    const T* kernel, const T* y, const T* z, index_t B, index_t I, index_t H,
                    Activation act) {
  const index_t n = B * H;
  const bool split_cols =
      n >= kDenseParallelElems && get_num_threads() > 1 && H >= 2 * kColAlign;
  const T* dz_used = dy;
  if (act != Activation::linear && !activation_is_rowwise(act) && split_cols) {
    // dz = f'(y) dy and dbias = sum_B dz in one pass, one column chunk per thread
    parallel_chunks(H, n, kDenseParallelElems, kColAlign, [&](index_t h0, index_t h1) {
      dz_dbias(dbias, dz, dy, y, z, B, H, h0, h1, act);
    });
    dz_used = dz;
  } else {
    if (act != Activation::linear) {
      activation_backward(dz, dy, y, z, B, H, act);  // threaded by elements or rows
      dz_used = dz;
    }
    if (split_cols)
      parallel_chunks(H, n, kDenseParallelElems, kColAlign,
                      [&](index_t h0, index_t h1) { col_sums(dbias, dz_used, B, H, h0, h1); });
    else if (H > 0)
      col_sums(dbias, dz_used, B, H, 0, H);
  }
  // dkernel = x^T dz: (I, B) x (B, H)
  gemm<T>(true, false, I, H, B, T(1), x, std::max<index_t>(I, 1), dz_used,
          std::max<index_t>(H, 1), T(0), dkernel, std::max<index_t>(H, 1));
  // dx = dz kernel^T: (B, H) x (H, I)
  if (dx)
    gemm<T>(false, true, B, I, H, T(1), dz_used, std::max<index_t>(H, 1), kernel,
            std::max<index_t>(H, 1), T(0), dx, std::max<index_t>(I, 1));
}

// ---------------------------------------------------------------------------------------------

template <typename T>
void dense_forward_ref(T* y, T* z, const T* x, const T* kernel, const T* bias, index_t B,
                       index_t I, index_t H, Activation act) {
  gemm_ref<T>(false, false, B, H, I, T(1), x, std::max<index_t>(I, 1), kernel,
              std::max<index_t>(H, 1), T(0), y, std::max<index_t>(H, 1));
  if (bias)
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h) y[b * H + h] += bias[h];
  if (z) std::copy(y, y + B * H, z);
  activation_forward_ref(y, y, B, H, act);
}

template <typename T>
void dense_backward_ref(T* dx, T* dkernel, T* dbias, T* dz, const T* dy, const T* x,
                        const T* kernel, const T* y, const T* z, index_t B, index_t I,
                        index_t H, Activation act) {
  const T* dz_used = dy;
  if (dz) {
    activation_backward_ref(dz, dy, y, z, B, H, act);
    dz_used = dz;
  }
  for (index_t h = 0; h < H; ++h) {
    T acc = T(0);
    for (index_t b = 0; b < B; ++b) acc += dz_used[b * H + h];
    dbias[h] = acc;
  }
  gemm_ref<T>(true, false, I, H, B, T(1), x, std::max<index_t>(I, 1), dz_used,
              std::max<index_t>(H, 1), T(0), dkernel, std::max<index_t>(H, 1));
  if (dx)
    gemm_ref<T>(false, true, B, I, H, T(1), dz_used, std::max<index_t>(H, 1), kernel,
                std::max<index_t>(H, 1), T(0), dx, std::max<index_t>(I, 1));
}

#define NN_INSTANTIATE(T)                                                                      \
  template void dense_forward<T>(T*, T*, const T*, const T*, const T*, index_t, index_t,      \
                                 index_t, Activation);                                         \
  template void dense_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*,      \
                                  const T*, index_t, index_t, index_t, Activation);            \
  template void dense_forward_ref<T>(T*, T*, const T*, const T*, const T*, index_t, index_t,   \
                                     index_t, Activation);                                     \
  template void dense_backward_ref<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                      const T*, index_t, index_t, index_t, Activation);
NN_INSTANTIATE(float)
NN_INSTANTIATE(double)
#undef NN_INSTANTIATE

}  // namespace nanonet
