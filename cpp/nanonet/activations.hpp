// activations: y = f(x) and its backward, computed from the output y.
//
//   linear       y = x                         dx = dy
//   sigmoid      y = 1 / (1 + exp(-x))         dx = dy * y * (1 - y)
//   tanh         y = tanh(x)                   dx = dy * (1 - y^2)
//   relu         y = max(x, 0) (NaN stays)     dx = y > 0 ? dy : 0
//   softmax      y_j = exp(x_j - m) / s        dx_j = y_j * (dy_j - sum_k dy_k y_k)
//   log_softmax  y_j = x_j - m - log(s)        dx_j = dy_j - exp(y_j) * sum_k dy_k
// Keras 3's other activations (their default arguments, fixed by the name):
//   gelu         y = x Phi(x) = x erfc(-x/sqrt2)/2             dx = dy (Phi(x) + x phi(x))
//   gelu_approximate (Keras gelu(approximate=True)), u = sqrt(2/pi) (x + 0.044715 x^3):
//                y = x (1 + tanh(u))/2 = x s, s = sigmoid(2u)  dx = dy (s + 2 x s (1-s) u')
//   silu (swish) y = x sigmoid(x)                               dx = dy s (1 + x (1 - s))
//   elu          y = x > 0 ? x : expm1(x)      (alpha = 1)      dx = dy (y > 0 ? 1 : y + 1)
//   selu         y = scale (x > 0 ? x : alpha expm1(x))         dx = dy (y > 0 ? scale
//                scale = 1.05070098, alpha = 1.67326324 (Keras)          : y + scale alpha)
//   leaky_relu   y = x < 0 ? 0.2 x : x   (negative_slope 0.2)   dx = dy (y < 0 ? 0.2 : 1)
//   softplus     y = max(x, 0) + log1p(exp(-|x|))               dx = dy (-expm1(-y))
//                                                                  = dy sigmoid(x)
//   softsign     y = x / (1 + |x|)                              dx = dy (1 - |y|)^2
//   hard_sigmoid y = relu6(x + 3) / 6                            dx = dy (0 < y < 1 ? 1/6 : 0)
//   exponential  y = exp(x)                                     dx = dy y
// gelu, gelu_approximate and silu cannot be differentiated from y (not monotonic), so their
// backward reads the forward INPUT x as well (activation_needs_input); every other activation's
// backward reads y only (x may be null). For x < -100 the gelu / silu outputs are 0 (their true
// values underflow long before), so -inf gives 0, not NaN; for |x| > 100 their slopes are 0 / 1.
// The tails are precise (no fast-math; no 1 + small cancels): expm1(x) for x <= 0 (elu, selu,
// softplus's slope) is 2t / (1 - t) with t = vm::tanh(x / 2), vectorised and a few ulp; gelu
// uses std::erfc, evaluated in double for float input, and softplus std::log1p: scalar libm
// calls, so those two forwards run ~50x slower than sigmoid (gelu_approximate is vectorised).
// Backward from y is exact to relative rounding except where y determines x poorly: elu / selu's
// y + 1 as y -> -1 and softsign's 1 - |y| as |y| -> 1 are exact to an absolute ~eps (the slope
// itself being ~0 there).
//
// Shapes: x, y, dy, dx are rows x cols, row-major and contiguous (row stride = cols).
// Elementwise activations treat them as rows * cols independent elements; softmax and
// log_softmax normalise each row. Outputs (y, dx) are overwritten. y may be x (in place);
// dx may be dy.
//
// Threads: elementwise work is cut into one contiguous chunk per thread, row-wise work is split
// by rows (static schedule); below kActivationParallelElems elements everything stays on the
// calling thread. Each output element is computed by one thread with the same operations in the
// same order whatever the thread count, so results do not depend on it. The inner loops use
// vecmath (vm::exp/sigmoid/tanh) and are compiled per ISA (NN_ISA_CLONES).
//
// The serial building blocks at the end are for other kernels (Dense's GEMM epilogue, the
// losses) that call them from inside their own parallel regions or per block.
#pragma once
#include <algorithm>
#include <string>

#include "nanonet/runtime.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

enum class Activation {
  linear, sigmoid, tanh, relu, softmax, log_softmax,
  gelu, gelu_approximate, silu, elu, selu, leaky_relu, softplus, softsign, hard_sigmoid,
  exponential
};

// The names above ("swish" is accepted for silu, as in Keras); anything else throws
// std::invalid_argument naming `fn`, the bad name and the valid ones.
Activation activation_from_name(const std::string& name, const char* fn = "activation");
const char* activation_name(Activation act);
const char* activation_valid_names();  // "linear, sigmoid, tanh, relu, softmax, log_softmax, ..."
inline bool activation_is_rowwise(Activation act) {
  return act == Activation::softmax || act == Activation::log_softmax;
}
// True when the backward needs the forward input x (gelu, gelu_approximate, silu).
inline bool activation_needs_input(Activation act) {
  return act == Activation::gelu || act == Activation::gelu_approximate ||
         act == Activation::silu;
}

constexpr index_t kActivationParallelElems = index_t(1) << 15;

// y = f(x); rows x cols; y overwritten (may be x).
template <typename T>
void activation_forward(T* y, const T* x, index_t rows, index_t cols, Activation act);

// dx = f'(.) applied to dy, from the forward OUTPUT y and, for activation_needs_input(act), the
// forward INPUT x (null otherwise); dx overwritten (may be dy).
template <typename T>
void activation_backward(T* dx, const T* dy, const T* y, const T* x, index_t rows, index_t cols,
                         Activation act);

// Plain scalar twins (std::exp, std::tanh, one thread): the specification of the two above.
template <typename T>
void activation_forward_ref(T* y, const T* x, index_t rows, index_t cols, Activation act);
template <typename T>
void activation_backward_ref(T* dx, const T* dy, const T* y, const T* x, index_t rows,
                             index_t cols, Activation act);

// ---- serial building blocks (no threads) ----------------------------------------------------

// c[i * ldc + j] = f(c[i * ldc + j] + bias[j]) on an m x n block; bias may be null (no add).
// In place. f is elementwise: for softmax / log_softmax only the bias is added (they need whole
// rows; apply them afterwards). z, when not null, receives the pre-activation
// z[i * ldz + j] = c + bias (what activation_needs_input activations' backward reads).
// Never throws (it runs inside GEMM's parallel region).
template <typename T>
void bias_activation_block(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                           Activation act, T* z = nullptr, index_t ldz = 0);

// One row of n: y = softmax(x) or log_softmax(x) (log = true). y may be x.
template <typename T>
void softmax_row(T* y, const T* x, index_t n, bool log);

// dx = f'(y) dy over n elements (for softmax / log_softmax: the n elements are one row); x is
// the forward input for activation_needs_input(act), else may be null. dx may be dy.
template <typename T>
void activation_backward_span(T* dx, const T* dy, const T* y, const T* x, index_t n,
                              Activation act);

// ---- threads -------------------------------------------------------------------------------

// f(begin, end) on one contiguous chunk of [0, n) per thread, chunk starts multiples of `align`
// (static partition); on the calling thread alone when work < min_work or n <= align. f must
// not throw. Used by the activation, dense and loss kernels.
template <typename F>
void parallel_chunks(index_t n, index_t work, index_t min_work, index_t align, F&& f) {
  const int nt = work >= min_work ? get_num_threads() : 1;
  if (nt <= 1 || n <= align) {
    if (n > 0) f(index_t(0), n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  {
    const index_t nthr = omp_get_num_threads(), tid = omp_get_thread_num();
    index_t per = (n + nthr - 1) / nthr;
    per = (per + align - 1) / align * align;
    const index_t b = std::min(n, tid * per), e = std::min(n, b + per);
    if (b < e) f(b, e);
  }
#else
  f(index_t(0), n);
#endif
}

}  // namespace nanonet
