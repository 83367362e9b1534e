#include "nanonet/activations.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "nanonet/vecmath.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define NN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NN_ALWAYS_INLINE inline
#endif

#ifdef _OPENMP
#define NN_PRAGMA(text) _Pragma(#text)
#define NN_SIMD_SUM(var) NN_PRAGMA(omp simd reduction(+ : var))
#define NN_SIMD_MAX(var) NN_PRAGMA(omp simd reduction(max : var))
#else
#define NN_SIMD_SUM(var)
#define NN_SIMD_MAX(var)
#endif

namespace nanonet {

// ---------------------------------------------------------------------------------------------
// names

Activation activation_from_name(const std::string& name, const char* fn) {
  if (name == "linear") return Activation::linear;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "tanh") return Activation::tanh;
  if (name == "relu") return Activation::relu;
  if (name == "softmax") return Activation::softmax;
  if (name == "log_softmax") return Activation::log_softmax;
  throw std::invalid_argument(std::string(fn) + ": activation must be one of " +
                              activation_valid_names() + "; got '" + name + "'");
}

const char* activation_name(Activation act) {
  switch (act) {
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
    case Activation::relu: return "relu";
    case Activation::softmax: return "softmax";
    case Activation::log_softmax: return "log_softmax";
    default: return "linear";
  }
}

const char* activation_valid_names() { return "linear, sigmoid, tanh, relu, softmax, log_softmax"; }

namespace {

// ---------------------------------------------------------------------------------------------
// Elementwise operators. Each is inlined into the ISA clones below.

struct SigmoidFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return vm::sigmoid(x); }
};
struct TanhFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return vm::tanh(x); }
};
struct ReluFwd {  // NaN passes through (x < 0 is false)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return vm::select(x < T(0), T(0), x); }
};
struct LinearFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return x; }
};

struct SigmoidBwd {  // y = sigmoid(x): dy * y * (1 - y)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const { return dy * y * (T(1) - y); }
};
struct TanhBwd {  // y = tanh(x): dy * (1 - y^2)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const { return dy * (T(1) - y * y); }
};
struct ReluBwd {  // y = max(x, 0): dy where y > 0
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const { return vm::select(y > T(0), dy, T(0)); }
};
struct LinearBwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T /*y*/) const { return dy; }
};

// y[i] = op(x[i]); the in-place case gets its own loop so the vectoriser needs no alias check.
template <typename T, typename Op>
NN_ALWAYS_INLINE void map1(T* y, const T* x, index_t n, Op op) {
  if (y == x) {
    for (index_t i = 0; i < n; ++i) y[i] = op(y[i]);
  } else {
    T* __restrict yr = y;
    const T* __restrict xr = x;
    for (index_t i = 0; i < n; ++i) yr[i] = op(xr[i]);
  }
}

template <typename T, typename Op>
NN_ALWAYS_INLINE void map2(T* dx, const T* dy, const T* y, index_t n, Op op) {
  if (dx == dy) {
    for (index_t i = 0; i < n; ++i) dx[i] = op(dx[i], y[i]);
  } else {
    T* __restrict dxr = dx;
    const T* __restrict dyr = dy;
    const T* __restrict yr = y;
    for (index_t i = 0; i < n; ++i) dxr[i] = op(dyr[i], yr[i]);
  }
}

template <typename T>
NN_ALWAYS_INLINE void forward_span_body(T* y, const T* x, index_t n, Activation act) {
  switch (act) {
    case Activation::sigmoid: map1(y, x, n, SigmoidFwd{}); break;
    case Activation::tanh: map1(y, x, n, TanhFwd{}); break;
    case Activation::relu: map1(y, x, n, ReluFwd{}); break;
    default:
      if (y != x) map1(y, x, n, LinearFwd{});
      break;
  }
}

template <typename T>
NN_ALWAYS_INLINE void backward_span_body(T* dx, const T* dy, const T* y, index_t n,
                                         Activation act) {
  switch (act) {
    case Activation::sigmoid: map2(dx, dy, y, n, SigmoidBwd{}); break;
    case Activation::tanh: map2(dx, dy, y, n, TanhBwd{}); break;
    case Activation::relu: map2(dx, dy, y, n, ReluBwd{}); break;
    default:
      if (dx != dy) map2(dx, dy, y, n, LinearBwd{});
      break;
  }
}

template <typename T, typename Op>
NN_ALWAYS_INLINE void bias_op_block(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                    Op op) {
  for (index_t i = 0; i < m; ++i) {
    T* __restrict c_i = c + i * ldc;
    if (bias) {
      const T* __restrict b = bias;
      for (index_t j = 0; j < n; ++j) c_i[j] = op(c_i[j] + b[j]);
    } else {
      for (index_t j = 0; j < n; ++j) c_i[j] = op(c_i[j]);
    }
  }
}

template <typename T>
NN_ALWAYS_INLINE void bias_act_block_body(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                          Activation act) {
  switch (act) {
    case Activation::sigmoid: bias_op_block(c, ldc, m, n, bias, SigmoidFwd{}); break;
    case Activation::tanh: bias_op_block(c, ldc, m, n, bias, TanhFwd{}); break;
    case Activation::relu: bias_op_block(c, ldc, m, n, bias, ReluFwd{}); break;
    default:
      if (bias) bias_op_block(c, ldc, m, n, bias, LinearFwd{});
      break;
  }
}

// softmax / log_softmax of rows [0, rows) of a rows x cols block.
template <typename T>
NN_ALWAYS_INLINE void softmax_rows_body(T* y, const T* x, index_t rows, index_t cols, bool log) {
  if (cols <= 0) return;
  for (index_t r = 0; r < rows; ++r) {
    const T* x_r = x + r * cols;
    T* y_r = y + r * cols;
    T m = x_r[0];
    NN_SIMD_MAX(m)
    for (index_t j = 0; j < cols; ++j) m = m > x_r[j] ? m : x_r[j];
    T s = T(0);
    if (log) {
      NN_SIMD_SUM(s)
      for (index_t j = 0; j < cols; ++j) s += vm::exp(x_r[j] - m);
      const T log_s = std::log(s);
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < cols; ++j) y_r[j] = (x_r[j] - m) - log_s;
    } else {
      NN_SIMD_SUM(s)
      for (index_t j = 0; j < cols; ++j) {
        const T e = vm::exp(x_r[j] - m);
        y_r[j] = e;
        s += e;
      }
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < cols; ++j) y_r[j] = y_r[j] / s;
    }
  }
}

// Backward of softmax / log_softmax over rows [0, rows), from the output y.
template <typename T>
NN_ALWAYS_INLINE void softmax_backward_rows_body(T* dx, const T* dy, const T* y, index_t rows,
                                                 index_t cols, bool log) {
  for (index_t r = 0; r < rows; ++r) {
    const T* dy_r = dy + r * cols;
    const T* y_r = y + r * cols;
    T* dx_r = dx + r * cols;
    T acc = T(0);
    if (log) {
      // y = x - logsumexp(x): dx_j = dy_j - softmax_j * sum_k dy_k, softmax = exp(y)
      NN_SIMD_SUM(acc)
      for (index_t j = 0; j < cols; ++j) acc += dy_r[j];
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < cols; ++j) dx_r[j] = dy_r[j] - vm::exp(y_r[j]) * acc;
    } else {
      // y = softmax(x): dx_j = y_j * (dy_j - sum_k dy_k y_k)
      NN_SIMD_SUM(acc)
      for (index_t j = 0; j < cols; ++j) acc += dy_r[j] * y_r[j];
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < cols; ++j) dx_r[j] = y_r[j] * (dy_r[j] - acc);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ISA clones: one per dtype, each a serial loop over a span.

NN_TARGET_CLONES void forward_span(float* y, const float* x, index_t n, Activation act) {
  forward_span_body(y, x, n, act);
}
NN_TARGET_CLONES void forward_span(double* y, const double* x, index_t n, Activation act) {
  forward_span_body(y, x, n, act);
}
NN_TARGET_CLONES void backward_span(float* dx, const float* dy, const float* y, index_t n,
                                    Activation act) {
  backward_span_body(dx, dy, y, n, act);
}
NN_TARGET_CLONES void backward_span(double* dx, const double* dy, const double* y, index_t n,
                                    Activation act) {
  backward_span_body(dx, dy, y, n, act);
}
NN_TARGET_CLONES void bias_act_block(float* c, index_t ldc, index_t m, index_t n,
                                     const float* bias, Activation act) {
  bias_act_block_body(c, ldc, m, n, bias, act);
}
NN_TARGET_CLONES void bias_act_block(double* c, index_t ldc, index_t m, index_t n,
                                     const double* bias, Activation act) {
  bias_act_block_body(c, ldc, m, n, bias, act);
}
NN_TARGET_CLONES void softmax_rows(float* y, const float* x, index_t rows, index_t cols,
                                   bool log) {
  softmax_rows_body(y, x, rows, cols, log);
}
NN_TARGET_CLONES void softmax_rows(double* y, const double* x, index_t rows, index_t cols,
                                   bool log) {
  softmax_rows_body(y, x, rows, cols, log);
}
NN_TARGET_CLONES void softmax_backward_rows(float* dx, const float* dy, const float* y,
                                            index_t rows, index_t cols, bool log) {
  softmax_backward_rows_body(dx, dy, y, rows, cols, log);
}
NN_TARGET_CLONES void softmax_backward_rows(double* dx, const double* dy, const double* y,
                                            index_t rows, index_t cols, bool log) {
  softmax_backward_rows_body(dx, dy, y, rows, cols, log);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// threaded kernels

template <typename T>
void activation_forward(T* y, const T* x, index_t rows, index_t cols, Activation act) {
  const index_t n = rows * cols;
  if (activation_is_rowwise(act)) {
    const bool log = act == Activation::log_softmax;
    parallel_chunks(rows, n, kActivationParallelElems, 1, [&](index_t r0, index_t r1) {
      softmax_rows(y + r0 * cols, x + r0 * cols, r1 - r0, cols, log);
    });
  } else {
    parallel_chunks(n, n, kActivationParallelElems, 64, [&](index_t i0, index_t i1) {
      forward_span(y + i0, x + i0, i1 - i0, act);
    });
  }
}

template <typename T>
void activation_backward(T* dx, const T* dy, const T* y, index_t rows, index_t cols,
                         Activation act) {
  const index_t n = rows * cols;
  if (activation_is_rowwise(act)) {
    const bool log = act == Activation::log_softmax;
    parallel_chunks(rows, n, kActivationParallelElems, 1, [&](index_t r0, index_t r1) {
      softmax_backward_rows(dx + r0 * cols, dy + r0 * cols, y + r0 * cols, r1 - r0, cols, log);
    });
  } else {
    parallel_chunks(n, n, kActivationParallelElems, 64, [&](index_t i0, index_t i1) {
      backward_span(dx + i0, dy + i0, y + i0, i1 - i0, act);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// serial building blocks

template <typename T>
void bias_activation_block(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                           Activation act) {
  // softmax needs whole rows, which a block is not: only the bias is added for it
  bias_act_block(c, ldc, m, n, bias, activation_is_rowwise(act) ? Activation::linear : act);
}

template <typename T>
void softmax_row(T* y, const T* x, index_t n, bool log) {
  softmax_rows(y, x, index_t(1), n, log);
}

template <typename T>
void activation_backward_span(T* dx, const T* dy, const T* y, index_t n, Activation act) {
  if (activation_is_rowwise(act))  // the span is one whole row
    softmax_backward_rows(dx, dy, y, index_t(1), n, act == Activation::log_softmax);
  else
    backward_span(dx, dy, y, n, act);
}

// ---------------------------------------------------------------------------------------------
// scalar references

template <typename T>
void activation_forward_ref(T* y, const T* x, index_t rows, index_t cols, Activation act) {
  const index_t n = rows * cols;
  switch (act) {
    case Activation::sigmoid:
      for (index_t i = 0; i < n; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
      break;
    case Activation::tanh:
      for (index_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
    case Activation::relu:
      for (index_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
      break;
    case Activation::softmax:
    case Activation::log_softmax:
      for (index_t r = 0; r < rows; ++r) {
        const T* x_r = x + r * cols;
        T* y_r = y + r * cols;
        T m = cols > 0 ? x_r[0] : T(0);
        for (index_t j = 0; j < cols; ++j) m = (x_r[j] > m || std::isnan(x_r[j])) ? x_r[j] : m;
        T s = T(0);
        for (index_t j = 0; j < cols; ++j) s += std::exp(x_r[j] - m);
        for (index_t j = 0; j < cols; ++j)
          y_r[j] = act == Activation::softmax ? std::exp(x_r[j] - m) / s
                                              : (x_r[j] - m) - std::log(s);
      }
      break;
    default:
      for (index_t i = 0; i < n; ++i) y[i] = x[i];
      break;
  }
}

template <typename T>
void activation_backward_ref(T* dx, const T* dy, const T* y, index_t rows, index_t cols,
                             Activation act) {
  const index_t n = rows * cols;
  switch (act) {
    case Activation::sigmoid:
      for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
      break;
    case Activation::tanh:
      for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
      break;
    case Activation::relu:
      for (index_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
      break;
    case Activation::softmax:
    case Activation::log_softmax:
      for (index_t r = 0; r < rows; ++r) {
        const T* dy_r = dy + r * cols;
        const T* y_r = y + r * cols;
        T* dx_r = dx + r * cols;
        T acc = T(0);
        if (act == Activation::softmax) {
          for (index_t j = 0; j < cols; ++j) acc += dy_r[j] * y_r[j];
          for (index_t j = 0; j < cols; ++j) dx_r[j] = y_r[j] * (dy_r[j] - acc);
        } else {
          for (index_t j = 0; j < cols; ++j) acc += dy_r[j];
          for (index_t j = 0; j < cols; ++j) dx_r[j] = dy_r[j] - std::exp(y_r[j]) * acc;
        }
      }
      break;
    default:
      for (index_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
  }
}

#define NN_INSTANTIATE(T)                                                                      \
  template void activation_forward<T>(T*, const T*, index_t, index_t, Activation);            \
  template void activation_backward<T>(T*, const T*, const T*, index_t, index_t, Activation); \
  template void activation_forward_ref<T>(T*, const T*, index_t, index_t, Activation);        \
  template void activation_backward_ref<T>(T*, const T*, const T*, index_t, index_t,          \
                                           Activation);                                       \
  template void bias_activation_block<T>(T*, index_t, index_t, index_t, const T*, Activation); \
  template void softmax_row<T>(T*, const T*, index_t, bool);                                  \
  template void activation_backward_span<T>(T*, const T*, const T*, index_t, Activation);
NN_INSTANTIATE(float)
NN_INSTANTIATE(double)
#undef NN_INSTANTIATE

}  // namespace nanonet
