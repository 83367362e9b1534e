#include "nanonet/activations.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "nanonet/vecmath.hpp"

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
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_approximate") return Activation::gelu_approximate;
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "elu") return Activation::elu;
  if (name == "selu") return Activation::selu;
  if (name == "leaky_relu") return Activation::leaky_relu;
  if (name == "softplus") return Activation::softplus;
  if (name == "softsign") return Activation::softsign;
  if (name == "hard_sigmoid") return Activation::hard_sigmoid;
  if (name == "exponential") return Activation::exponential;
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
    case Activation::gelu: return "gelu";
    case Activation::gelu_approximate: return "gelu_approximate";
    case Activation::silu: return "silu";
    case Activation::elu: return "elu";
    case Activation::selu: return "selu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::softplus: return "softplus";
    case Activation::softsign: return "softsign";
    case Activation::hard_sigmoid: return "hard_sigmoid";
    case Activation::exponential: return "exponential";
    default: return "linear";
  }
}

const char* activation_valid_names() {
  return "linear, sigmoid, tanh, relu, softmax, log_softmax, gelu, gelu_approximate, silu "
         "(swish), elu, selu, leaky_relu, softplus, softsign, hard_sigmoid, exponential";
}

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

// Keras 3 constants.
constexpr double kSqrtHalf = 0.70710678118654752440;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1 / sqrt(2 pi)
constexpr double kGeluK0 = 0.79788456080286535588;       // sqrt(2 / pi)
constexpr double kGeluK1 = 0.044715;
constexpr double kSeluScale = 1.05070098;
constexpr double kSeluAlpha = 1.67326324;
constexpr double kLeakySlope = 0.2;
constexpr double kGeluFloor = -100.0;  // below it gelu / silu are 0 (their values underflow)

// gelu and gelu_approximate evaluate float inputs in double: in the negative tail their value is
// exp(-x^2/2)-like, so the rounding of x / sqrt 2 (or of u ~ x^3) in float would cost ~x^2 ulp.
template <typename T>
using Wide = std::conditional_t<std::is_same<T, float>::value, double, T>;

// expm1(x) for x <= 0, vectorisable and precise to a few ulp: with t = tanh(x / 2),
// expm1(x) = 2t / (1 - t), and 1 - t >= 1 never cancels (tanh is exact to a few ulp relative,
// also for tiny x). Used on the x <= 0 side of elu / selu and for softplus's slope; a positive x
// gives a finite or inf value that those selects discard.
template <typename T>
NN_ALWAYS_INLINE T expm1_nonpos(T x) {
  const T t = vm::tanh(T(0.5) * x);
  return T(2) * t / (T(1) - t);
}

struct GeluFwd {  // x Phi(x) = x erfc(-x / sqrt 2) / 2
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const {
    using W = Wide<T>;
    const W w = W(x);
    const T y = T(W(0.5) * w * std::erfc(-w * W(kSqrtHalf)));
    return vm::select(x < T(kGeluFloor), T(0), y);
  }
};
struct GeluTanhFwd {  // x (1 + tanh(u)) / 2 = x sigmoid(2u)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const {
    using W = Wide<T>;
    const W w = W(x);
    const W u = W(kGeluK0) * (w + W(kGeluK1) * w * w * w);
    return vm::select(x < T(kGeluFloor), T(0), T(w * vm::sigmoid(W(2) * u)));
  }
};
struct SiluFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const {
    return vm::select(x < T(kGeluFloor), T(0), x * vm::sigmoid(x));
  }
};
struct EluFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return vm::select(x > T(0), x, expm1_nonpos(x)); }
};
struct SeluFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const {
    return T(kSeluScale) * vm::select(x > T(0), x, T(kSeluAlpha) * expm1_nonpos(x));
  }
};
struct LeakyReluFwd {  // NaN passes through
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return vm::select(x < T(0), T(kLeakySlope) * x, x); }
};
struct SoftplusFwd {  // max(x, 0) + log1p(exp(-|x|)); NaN passes through the log1p term
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const {
    return vm::select(x > T(0), x, T(0)) + std::log1p(vm::exp(-std::fabs(x)));
  }
};
struct SoftsignFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return x / (T(1) + std::fabs(x)); }
};
struct HardSigmoidFwd {  // relu6(x + 3) / 6, Keras 3's definition
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const {
    T t = x + T(3);
    t = vm::select(t < T(0), T(0), t);
    t = vm::select(t > T(6), T(6), t);
    return t / T(6);
  }
};
struct ExponentialFwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T x) const { return vm::exp(x); }
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
struct EluBwd {  // y = x > 0 ? x : expm1(x): 1, or exp(x) = y + 1
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const {
    return dy * vm::select(y > T(0), T(1), y + T(1));
  }
};
struct SeluBwd {  // y = scale (x > 0 ? x : alpha expm1(x)): scale, or y + scale alpha
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const {
    return dy * vm::select(y > T(0), T(kSeluScale), y + T(kSeluScale * kSeluAlpha));
  }
};
struct LeakyReluBwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const {
    return dy * vm::select(y < T(0), T(kLeakySlope), T(1));
  }
};
struct SoftplusBwd {  // sigmoid(x) = 1 - exp(-y)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const { return dy * -expm1_nonpos(-y); }
};
struct SoftsignBwd {  // 1 / (1 + |x|)^2 = (1 - |y|)^2
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const {
    const T t = T(1) - std::fabs(y);
    return dy * t * t;
  }
};
struct HardSigmoidBwd {  // 1/6 on the ramp 0 < y < 1
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const {
    return vm::select((y > T(0)) & (y < T(1)), dy / T(6), T(0));
  }
};
struct ExponentialBwd {
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T y) const { return dy * y; }
};

// From the forward input x (activation_needs_input).
struct GeluBwd {  // Phi(x) + x phi(x)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T x) const {
    using W = Wide<T>;
    const W w = W(x);
    const W d = W(0.5) * std::erfc(-w * W(kSqrtHalf)) +
                w * (W(kInvSqrt2Pi) * vm::exp(W(-0.5) * w * w));
    // |x| > 100: the slope is 0 or 1 (and inf * exp(-inf) would be NaN)
    const T tail = vm::select(x > T(0), T(1), T(0));
    return dy * vm::select(std::fabs(x) > T(-kGeluFloor), tail, T(d));
  }
};
struct GeluTanhBwd {  // s + 2 x s (1 - s) u', s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 k1 x^2)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T x) const {
    using W = Wide<T>;
    const W w = W(x);
    const W x2 = w * w;
    const W u = W(kGeluK0) * (w + W(kGeluK1) * x2 * w);
    const W du = W(kGeluK0) * (W(1) + W(3 * kGeluK1) * x2);
    const W s = vm::sigmoid(W(2) * u);
    const T d = T(s + W(2) * w * du * (s * (W(1) - s)));
    // |x| > 100: s(1 - s) is 0 while x du may overflow (0 * inf); the slope is 1 or 0 there
    const T tail = vm::select(x > T(0), T(1), T(0));
    return dy * vm::select(std::fabs(x) > T(-kGeluFloor), tail, d);
  }
};
struct SiluBwd {  // s (1 + x (1 - s)), s = sigmoid(x)
  template <typename T>
  NN_ALWAYS_INLINE T operator()(T dy, T x) const {
    const T s = vm::sigmoid(x);
    const T tail = vm::select(x > T(0), T(1), T(0));  // |x| > 100 (inf * 0 would be NaN)
    return dy * vm::select(std::fabs(x) > T(-kGeluFloor), tail, s * (T(1) + x * (T(1) - s)));
  }
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

// The same for sigmoid / tanh through their span functions (vm::sigmoid_span: the AVX-512 path's
// intrinsics): the bias added in place first, then the row's activation.
template <typename T, typename Span>
NN_ALWAYS_INLINE void bias_span_block(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                      Span span) {
  for (index_t i = 0; i < m; ++i) {
    T* __restrict c_i = c + i * ldc;
    if (bias) {
      const T* __restrict b = bias;
      NN_PRAGMA_SIMD
      for (index_t j = 0; j < n; ++j) c_i[j] += b[j];
    }
    span(c_i, c_i, n);
  }
}

// The same, keeping the pre-activation: z_i[j] = c_i[j] + bias[j]; c_i[j] = op(z_i[j]).
template <typename T, typename Op>
NN_ALWAYS_INLINE void bias_op_block_z(T* c, index_t ldc, T* z, index_t ldz, index_t m, index_t n,
                                      const T* bias, Op op) {
  for (index_t i = 0; i < m; ++i) {
    T* __restrict c_i = c + i * ldc;
    T* __restrict z_i = z + i * ldz;
    if (bias) {
      const T* __restrict b = bias;
      for (index_t j = 0; j < n; ++j) {
        const T t = c_i[j] + b[j];
        z_i[j] = t;
        c_i[j] = op(t);
      }
    } else {
      for (index_t j = 0; j < n; ++j) {
        const T t = c_i[j];
        z_i[j] = t;
        c_i[j] = op(t);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The newer activations, each in its own out-of-line, ISA-cloned loop. Kept out of the bodies
// above on purpose: inlining more loops (with libm calls) into one function pushed GCC past its
// inlining limits there, vm::sigmoid / vm::tanh stopped being inlined and the sigmoid / tanh
// loops no longer vectorised (25x slower).

// The loops with their functor fixed (the clones' parameters are exactly their arguments).
template <typename Op, typename T>
NN_ALWAYS_INLINE void map1_op(T* y, const T* x, index_t n) {
  map1(y, x, n, Op{});
}
template <typename Op, typename T>
NN_ALWAYS_INLINE void map2_op(T* dx, const T* dy, const T* a, index_t n) {
  map2(dx, dy, a, n, Op{});
}
template <typename Op, typename T>
NN_ALWAYS_INLINE void bias_op_block_op(T* c, index_t ldc, index_t m, index_t n, const T* bias) {
  bias_op_block(c, ldc, m, n, bias, Op{});
}
template <typename Op, typename T>
NN_ALWAYS_INLINE void bias_op_block_z_op(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                         T* z, index_t ldz) {
  bias_op_block_z(c, ldc, z, ldz, m, n, bias, Op{});
}

#if defined(__GNUC__) || defined(__clang__)
#define NN_NOINLINE __attribute__((noinline))
#else
#define NN_NOINLINE
#endif

// FWD(y, x, n), BWD(dx, dy, a, n) (a = y or x), BIAS(c, ldc, m, n, bias), BIASZ(..., z, ldz).
// linear, sigmoid, tanh and relu have their forward and bias loops inlined in the span bodies
// below; only their pre-activation keeping epilogue (BIASZ) is out of line.
#define NN_ACT_BIASZ_LOOP(NAME, FWD_OP)                                                        \
  NN_ISA_CLONES(void, NAME##_biasz,                                                            \
                (float* c, index_t ldc, index_t m, index_t n, const float* bias, float* z,     \
                 index_t ldz),                                                                 \
                (c, ldc, m, n, bias, z, ldz), bias_op_block_z_op<FWD_OP>)                      \
  NN_ISA_CLONES_F64(void, NAME##_biasz,                                                            \
                (double* c, index_t ldc, index_t m, index_t n, const double* bias, double* z,  \
                 index_t ldz),                                                                 \
                (c, ldc, m, n, bias, z, ldz), bias_op_block_z_op<FWD_OP>)
#define NN_ACT_LOOPS(NAME, FWD_OP)                                                             \
  NN_ISA_CLONES(void, NAME##_fwd, (float* y, const float* x, index_t n), (y, x, n),             \
                map1_op<FWD_OP>)                                                               \
  NN_ISA_CLONES_F64(void, NAME##_fwd, (double* y, const double* x, index_t n), (y, x, n),           \
                map1_op<FWD_OP>)                                                               \
  NN_ISA_CLONES(void, NAME##_bias,                                                             \
                (float* c, index_t ldc, index_t m, index_t n, const float* bias),              \
                (c, ldc, m, n, bias), bias_op_block_op<FWD_OP>)                                \
  NN_ISA_CLONES_F64(void, NAME##_bias,                                                             \
                (double* c, index_t ldc, index_t m, index_t n, const double* bias),            \
                (c, ldc, m, n, bias), bias_op_block_op<FWD_OP>)                                \
  NN_ACT_BIASZ_LOOP(NAME, FWD_OP)
#define NN_ACT_BWD_LOOP(NAME, BWD_OP)                                                          \
  NN_ISA_CLONES(void, NAME##_bwd, (float* dx, const float* dy, const float* a, index_t n),      \
                (dx, dy, a, n), map2_op<BWD_OP>)                                               \
  NN_ISA_CLONES_F64(void, NAME##_bwd, (double* dx, const double* dy, const double* a, index_t n),   \
                (dx, dy, a, n), map2_op<BWD_OP>)

// The pre-activation keeping epilogue serves every elementwise activation.
NN_ACT_BIASZ_LOOP(linear, LinearFwd)
NN_ACT_BIASZ_LOOP(sigmoid, SigmoidFwd)
NN_ACT_BIASZ_LOOP(tanh, TanhFwd)
NN_ACT_BIASZ_LOOP(relu, ReluFwd)
NN_ACT_LOOPS(gelu, GeluFwd)
NN_ACT_LOOPS(gelu_tanh, GeluTanhFwd)
NN_ACT_LOOPS(silu, SiluFwd)
NN_ACT_LOOPS(elu, EluFwd)
NN_ACT_LOOPS(selu, SeluFwd)
NN_ACT_LOOPS(leaky_relu, LeakyReluFwd)
NN_ACT_LOOPS(softplus, SoftplusFwd)
NN_ACT_LOOPS(softsign, SoftsignFwd)
NN_ACT_LOOPS(hard_sigmoid, HardSigmoidFwd)
NN_ACT_LOOPS(exponential, ExponentialFwd)
NN_ACT_BWD_LOOP(gelu, GeluBwd)
NN_ACT_BWD_LOOP(gelu_tanh, GeluTanhBwd)
NN_ACT_BWD_LOOP(silu, SiluBwd)
NN_ACT_BWD_LOOP(elu, EluBwd)
NN_ACT_BWD_LOOP(selu, SeluBwd)
NN_ACT_BWD_LOOP(leaky_relu, LeakyReluBwd)
NN_ACT_BWD_LOOP(softplus, SoftplusBwd)
NN_ACT_BWD_LOOP(softsign, SoftsignBwd)
NN_ACT_BWD_LOOP(hard_sigmoid, HardSigmoidBwd)
NN_ACT_BWD_LOOP(exponential, ExponentialBwd)
#undef NN_ACT_LOOPS
#undef NN_ACT_BIASZ_LOOP
#undef NN_ACT_BWD_LOOP

// The dispatchers (plain functions: the loops they call are the cloned ones).
#define NN_EACH_EXTRA(CALL)                                                                    \
  switch (act) {                                                                               \
    case Activation::gelu: CALL(gelu); break;                                                  \
    case Activation::gelu_approximate: CALL(gelu_tanh); break;                                 \
    case Activation::silu: CALL(silu); break;                                                  \
    case Activation::elu: CALL(elu); break;                                                    \
    case Activation::selu: CALL(selu); break;                                                  \
    case Activation::leaky_relu: CALL(leaky_relu); break;                                      \
    case Activation::softplus: CALL(softplus); break;                                          \
    case Activation::softsign: CALL(softsign); break;                                          \
    case Activation::hard_sigmoid: CALL(hard_sigmoid); break;                                  \
    case Activation::exponential: CALL(exponential); break;                                    \
    default: break;                                                                            \
  }

template <typename T>
NN_NOINLINE void forward_span_extra(T* y, const T* x, index_t n, Activation act) {
#define NN_CALL(NAME) NAME##_fwd(y, x, n)
  NN_EACH_EXTRA(NN_CALL)
#undef NN_CALL
}

template <typename T>
NN_NOINLINE void backward_span_extra(T* dx, const T* dy, const T* y, const T* x, index_t n,
                                     Activation act) {
  // gelu, gelu_approximate and silu read the input x; the others the output y
  const T* a = activation_needs_input(act) ? x : y;
#define NN_CALL(NAME) NAME##_bwd(dx, dy, a, n)
  NN_EACH_EXTRA(NN_CALL)
#undef NN_CALL
}

template <typename T>
NN_NOINLINE void bias_act_block_extra(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                      Activation act) {
#define NN_CALL(NAME) NAME##_bias(c, ldc, m, n, bias)
  NN_EACH_EXTRA(NN_CALL)
#undef NN_CALL
}

template <typename T>
NN_NOINLINE void bias_act_block_z(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                  Activation act, T* z, index_t ldz) {
#define NN_CALL(NAME) NAME##_biasz(c, ldc, m, n, bias, z, ldz)
  switch (act) {
    case Activation::sigmoid: NN_CALL(sigmoid); return;
    case Activation::tanh: NN_CALL(tanh); return;
    case Activation::relu: NN_CALL(relu); return;
    case Activation::linear:
    case Activation::softmax:
    case Activation::log_softmax: NN_CALL(linear); return;
    default: break;
  }
  NN_EACH_EXTRA(NN_CALL)
#undef NN_CALL
}
#undef NN_EACH_EXTRA

template <typename T>
NN_ALWAYS_INLINE void forward_span_body(T* y, const T* x, index_t n, Activation act) {
  switch (act) {
    case Activation::sigmoid: vm::sigmoid_span(y, x, n); break;
    case Activation::tanh: vm::tanh_span(y, x, n); break;
    case Activation::relu: map1(y, x, n, ReluFwd{}); break;
    case Activation::linear:
    case Activation::softmax:
    case Activation::log_softmax:
      if (y != x) map1(y, x, n, LinearFwd{});
      break;
    default: forward_span_extra(y, x, n, act); break;
  }
}

// y is the forward output; x the forward input (read only by activation_needs_input ones).
template <typename T>
NN_ALWAYS_INLINE void backward_span_body(T* dx, const T* dy, const T* y, const T* x, index_t n,
                                         Activation act) {
  switch (act) {
    case Activation::sigmoid: map2(dx, dy, y, n, SigmoidBwd{}); break;
    case Activation::tanh: map2(dx, dy, y, n, TanhBwd{}); break;
    case Activation::relu: map2(dx, dy, y, n, ReluBwd{}); break;
    case Activation::linear:
    case Activation::softmax:
    case Activation::log_softmax:
      if (dx != dy) map2(dx, dy, y, n, LinearBwd{});
      break;
    default: backward_span_extra(dx, dy, y, x, n, act); break;
  }
}

template <typename T>
NN_ALWAYS_INLINE void bias_act_block_body(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                                          Activation act, T* z, index_t ldz) {
  if (z) {  // keeping the pre-activation: its own loops, out of line
    bias_act_block_z(c, ldc, m, n, bias, act, z, ldz);
    return;
  }
  switch (act) {
    case Activation::sigmoid: bias_span_block(c, ldc, m, n, bias, vm::sigmoid_span<T>); break;
    case Activation::tanh: bias_span_block(c, ldc, m, n, bias, vm::tanh_span<T>); break;
    case Activation::relu: bias_op_block(c, ldc, m, n, bias, ReluFwd{}); break;
    case Activation::linear:
    case Activation::softmax:
    case Activation::log_softmax:
      if (bias) bias_op_block(c, ldc, m, n, bias, LinearFwd{});
      break;
    default: bias_act_block_extra(c, ldc, m, n, bias, act); break;
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

NN_ISA_CLONES(void, forward_span, (float* y, const float* x, index_t n, Activation act),
              (y, x, n, act), forward_span_body)
NN_ISA_CLONES_F64(void, forward_span, (double* y, const double* x, index_t n, Activation act),
              (y, x, n, act), forward_span_body)
NN_ISA_CLONES(void, backward_span, (float* dx, const float* dy, const float* y, const float* x,
               index_t n, Activation act), (dx, dy, y, x, n, act), backward_span_body)
NN_ISA_CLONES_F64(void, backward_span, (double* dx, const double* dy, const double* y, const double* x,
               index_t n, Activation act), (dx, dy, y, x, n, act), backward_span_body)
NN_ISA_CLONES(void, bias_act_block, (float* c, index_t ldc, index_t m, index_t n, const float* bias,
               Activation act, float* z, index_t ldz), (c, ldc, m, n, bias, act, z, ldz),
              bias_act_block_body)
NN_ISA_CLONES_F64(void, bias_act_block, (double* c, index_t ldc, index_t m, index_t n,
               const double* bias, Activation act, double* z, index_t ldz),
              (c, ldc, m, n, bias, act, z, ldz), bias_act_block_body)
NN_ISA_CLONES(void, softmax_rows, (float* y, const float* x, index_t rows, index_t cols, bool log),
              (y, x, rows, cols, log), softmax_rows_body)
NN_ISA_CLONES_F64(void, softmax_rows,
              (double* y, const double* x, index_t rows, index_t cols, bool log),
              (y, x, rows, cols, log), softmax_rows_body)
NN_ISA_CLONES(void, softmax_backward_rows,
              (float* dx, const float* dy, const float* y, index_t rows, index_t cols, bool log),
              (dx, dy, y, rows, cols, log), softmax_backward_rows_body)
NN_ISA_CLONES_F64(void, softmax_backward_rows,
              (double* dx, const double* dy, const double* y, index_t rows, index_t cols, bool log),
              (dx, dy, y, rows, cols, log), softmax_backward_rows_body)

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
void activation_backward(T* dx, const T* dy, const T* y, const T* x, index_t rows, index_t cols,
                         Activation act) {
  const index_t n = rows * cols;
  if (activation_is_rowwise(act)) {
    const bool log = act == Activation::log_softmax;
    parallel_chunks(rows, n, kActivationParallelElems, 1, [&](index_t r0, index_t r1) {
      softmax_backward_rows(dx + r0 * cols, dy + r0 * cols, y + r0 * cols, r1 - r0, cols, log);
    });
  } else {
    parallel_chunks(n, n, kActivationParallelElems, 64, [&](index_t i0, index_t i1) {
      backward_span(dx + i0, dy + i0, y ? y + i0 : nullptr, x ? x + i0 : nullptr, i1 - i0,
                    act);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// serial building blocks

template <typename T>
void bias_activation_block(T* c, index_t ldc, index_t m, index_t n, const T* bias,
                           Activation act, T* z, index_t ldz) {
  // softmax needs whole rows, which a block is not: only the bias is added for it
  bias_act_block(c, ldc, m, n, bias, activation_is_rowwise(act) ? Activation::linear : act, z,
                 ldz);
}

template <typename T>
void softmax_row(T* y, const T* x, index_t n, bool log) {
  softmax_rows(y, x, index_t(1), n, log);
}

template <typename T>
void activation_backward_span(T* dx, const T* dy, const T* y, const T* x, index_t n,
                              Activation act) {
  if (activation_is_rowwise(act))  // the span is one whole row
    softmax_backward_rows(dx, dy, y, index_t(1), n, act == Activation::log_softmax);
  else
    backward_span(dx, dy, y, x, n, act);
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
    case Activation::gelu:  // in Wide<T>, as the fast path
      for (index_t i = 0; i < n; ++i) {
        const Wide<T> w = x[i];
        y[i] = x[i] < T(kGeluFloor) ? T(0) : T(0.5 * w * std::erfc(-w * kSqrtHalf));
      }
      break;
    case Activation::gelu_approximate:
      for (index_t i = 0; i < n; ++i) {
        const Wide<T> w = x[i];
        const Wide<T> u = kGeluK0 * (w + kGeluK1 * w * w * w);
        y[i] = x[i] < T(kGeluFloor) ? T(0) : T(w / (1 + std::exp(-2 * u)));
      }
      break;
    case Activation::silu:
      for (index_t i = 0; i < n; ++i)
        y[i] = x[i] < T(kGeluFloor) ? T(0) : x[i] / (T(1) + std::exp(-x[i]));
      break;
    case Activation::elu:
      for (index_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : std::expm1(x[i]);
      break;
    case Activation::selu:
      for (index_t i = 0; i < n; ++i)
        y[i] = T(kSeluScale) * (x[i] > T(0) ? x[i] : T(kSeluAlpha) * std::expm1(x[i]));
      break;
    case Activation::leaky_relu:
      for (index_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(kLeakySlope) * x[i] : x[i];
      break;
    case Activation::softplus:
      for (index_t i = 0; i < n; ++i)
        y[i] = (x[i] > T(0) ? x[i] : T(0)) + std::log1p(std::exp(-std::fabs(x[i])));
      break;
    case Activation::softsign:
      for (index_t i = 0; i < n; ++i) y[i] = x[i] / (T(1) + std::fabs(x[i]));
      break;
    case Activation::hard_sigmoid:
      for (index_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i] + T(3), T(0)), T(6)) / T(6);
      break;
    case Activation::exponential:
      for (index_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
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
void activation_backward_ref(T* dx, const T* dy, const T* y, const T* x, index_t rows,
                             index_t cols, Activation act) {
  const index_t n = rows * cols;
  switch (act) {
    case Activation::gelu:
      for (index_t i = 0; i < n; ++i) {
        const Wide<T> w = x[i];
        const Wide<T> cdf = 0.5 * std::erfc(-w * kSqrtHalf);
        const Wide<T> pdf = kInvSqrt2Pi * std::exp(-0.5 * w * w);
        dx[i] = std::fabs(w) > -kGeluFloor ? (w > 0 ? dy[i] : T(0)) : dy[i] * T(cdf + w * pdf);
      }
      break;
    case Activation::gelu_approximate:
      for (index_t i = 0; i < n; ++i) {
        const Wide<T> w = x[i];
        if (std::fabs(w) > -kGeluFloor) {
          dx[i] = w > 0 ? dy[i] : T(0);
          continue;
        }
        // y = x (1 + t) / 2, t = tanh(u); 1 + t = 2 sigmoid(2u), 1 - t^2 = 4 s (1 - s)
        const Wide<T> u = kGeluK0 * (w + kGeluK1 * w * w * w);
        const Wide<T> s = 1 / (1 + std::exp(-2 * u));
        const Wide<T> du = kGeluK0 * (1 + 3 * kGeluK1 * w * w);
        dx[i] = dy[i] * T(s + 2 * w * s * (1 - s) * du);
      }
      break;
    case Activation::silu:
      for (index_t i = 0; i < n; ++i) {
        const T s = T(1) / (T(1) + std::exp(-x[i]));
        dx[i] = std::fabs(x[i]) > T(-kGeluFloor) ? (x[i] > T(0) ? dy[i] : T(0))
                                                 : dy[i] * s * (T(1) + x[i] * (T(1) - s));
      }
      break;
    case Activation::elu:
      for (index_t i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : dy[i] * (y[i] + T(1));
      break;
    case Activation::selu:
      for (index_t i = 0; i < n; ++i)
        dx[i] = dy[i] * (y[i] > T(0) ? T(kSeluScale) : y[i] + T(kSeluScale * kSeluAlpha));
      break;
    case Activation::leaky_relu:
      for (index_t i = 0; i < n; ++i) dx[i] = y[i] < T(0) ? T(kLeakySlope) * dy[i] : dy[i];
      break;
    case Activation::softplus:
      for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * -std::expm1(-y[i]);
      break;
    case Activation::softsign:
      for (index_t i = 0; i < n; ++i) {
        const T t = T(1) - std::fabs(y[i]);
        dx[i] = dy[i] * t * t;
      }
      break;
    case Activation::hard_sigmoid:
      for (index_t i = 0; i < n; ++i) dx[i] = (y[i] > T(0) && y[i] < T(1)) ? dy[i] / T(6) : T(0);
      break;
    case Activation::exponential:
      for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i];
      break;
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
  template void activation_backward<T>(T*, const T*, const T*, const T*, index_t, index_t,    \
                                       Activation);                                           \
  template void activation_forward_ref<T>(T*, const T*, index_t, index_t, Activation);        \
  template void activation_backward_ref<T>(T*, const T*, const T*, const T*, index_t, index_t, \
                                           Activation);                                       \
  template void bias_activation_block<T>(T*, index_t, index_t, index_t, const T*, Activation, \
                                         T*, index_t);                                        \
  template void softmax_row<T>(T*, const T*, index_t, bool);                                  \
  template void activation_backward_span<T>(T*, const T*, const T*, const T*, index_t,        \
                                            Activation);
NN_INSTANTIATE(float)
NN_INSTANTIATE(double)
#undef NN_INSTANTIATE

}  // namespace nanonet
