// vecmath: exp, sigmoid and tanh for float and double that vectorise.
//
// What: nanonet::vm::exp(x), vm::sigmoid(x) = 1 / (1 + exp(-x)), vm::tanh(x), overloaded for
// float and double. Header-only, inline, branch-free straight-line code: no calls (bit casts and
// fabs are builtins), so a loop over an array that calls them auto-vectorises at -O3 or under
// `#pragma omp simd` (NN_PRAGMA_SIMD). No fast-math is needed or assumed.
//
// Accuracy (measured against float64/long-double references in tests/test_activations.py):
// a few ulp over the whole range, including subnormal results of exp and sigmoid.
// Saturation: exp(+big / +inf) = +inf, exp(-big / -inf) = 0; sigmoid(+-big) = 1 / 0 (tiny
// values for moderate negative x are kept: sigmoid(-100) ~ 3.7e-44 in float); tanh(+-big) = +-1.
// NaN in, NaN out. No floating-point exceptions are relied on (no errno, no traps).
//
// Method (Cephes style): exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 computed in
// two pieces (Cody-Waite, ln 2 = C1 + C2 with C1 short so n * C1 is exact), |r| <= ln(2)/2.
// exp(r): float, a degree-7 polynomial 1 + r + r^2 P(r); double, the Pade form
// 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)). n comes from the round-to-nearest "magic number" trick
// (x * log2(e) + 1.5 * 2^23 or 1.5 * 2^52: the low mantissa bits of the sum hold n), so no
// float-to-int conversion is needed. 2^n is built in two halves, 2^n1 * 2^n2 with n1 ~ n/2, by
// writing n + bias into the exponent field with unsigned integer shifts; two halves keep both
// factors normal, so overflow to inf and gradual underflow to subnormals/0 come out right with
// only a clamp of x (to a range where the answer is already saturated, so n stays small).
// sigmoid: e = exp(-|x|) <= 1, s = 1 / (1 + e); x >= 0 gives s, x < 0 gives e * s (no overflow,
// no cancellation). tanh: |x| < 0.625 uses an odd polynomial (float) / rational (double) in x^2;
// otherwise 1 - 2 / (exp(2|x|) + 1), sign restored; both are computed and one selected.
//
// Wide SIMD without -march: write the function that holds a hot loop as
//   NN_ISA_CLONES(ret, name, (params), (args), body)
// which defines `ret name(params)` returning body(args), compiled three times on GCC/Clang for
// x86-64 (x86-64-v4 = AVX-512, x86-64-v3 = AVX2 + FMA, and the baseline) and dispatching on
// family_isa(Family::vecmath) at each call (runtime.hpp): so NANONET_ISA / set_isa and the
// import-time self-check choose the copy, not the loader. `body` is an always-inline function
// (it inlines into each copy and is vectorised for that ISA). Put the parallel region outside
// (OpenMP's outlined functions do not inherit the target): the cloned function should be the
// serial loop over a span, called once per thread chunk. In such loops write float selections
// as vm::select(c, a, b), not c ? a : b (GCC keeps the latter as a branch). The copies round
// slightly differently (FMA contraction), so results may differ between ISAs by float rounding,
// never between thread counts. A double overload is written NN_ISA_CLONES_F64 (same arguments):
// no AVX-512 copy, the avx512 path runs the AVX2 one.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "nanonet/runtime.hpp"

// What a BODY of NN_ISA_CLONES is declared with (and everything it calls that should be
// compiled for each copy's ISA).
#if defined(__GNUC__) || defined(__clang__)
#define NN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NN_ALWAYS_INLINE inline
#endif

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#if defined(__clang__) || __GNUC__ >= 12
#define NN_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define NN_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#else
#define NN_TARGET_V4 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#define NN_TARGET_V3 __attribute__((target("avx2,fma")))
#endif
// The three copies and the dispatcher; BODY_V4 runs in the AVX-512 copy, BODY in the others.
#define NN_ISA_CLONES_2(RET, NAME, PARAMS, ARGS, BODY_V4, BODY)                         \
  NN_TARGET_V4 RET NAME##_v4 PARAMS { return BODY_V4 ARGS; }                            \
  NN_TARGET_V3 RET NAME##_v3 PARAMS { return BODY ARGS; }                               \
  RET NAME##_v0 PARAMS { return BODY ARGS; }                                            \
  RET NAME PARAMS {                                                                     \
    switch (::nanonet::family_isa(::nanonet::Family::vecmath)) {                        \
      case ::nanonet::Isa::avx512: return NAME##_v4 ARGS;                               \
      case ::nanonet::Isa::avx2: return NAME##_v3 ARGS;                                 \
      default: return NAME##_v0 ARGS;                                                   \
    }                                                                                   \
  }
#define NN_ISA_CLONES(RET, NAME, PARAMS, ARGS, BODY) \
  NN_ISA_CLONES_2(RET, NAME, PARAMS, ARGS, BODY, BODY)
// The float64 twins: AVX2 + FMA and the baseline only; avx512 runs the AVX2 copy. float64 is
// for gradient checks and references, not speed, and an AVX-512 copy of every double loop
// cost about 1/6 of the cloned code in the package budget.
#define NN_ISA_CLONES_F64(RET, NAME, PARAMS, ARGS, BODY)                                \
  NN_TARGET_V3 RET NAME##_v3 PARAMS { return BODY ARGS; }                               \
  RET NAME##_v0 PARAMS { return BODY ARGS; }                                            \
  RET NAME PARAMS {                                                                     \
    if (::nanonet::family_isa(::nanonet::Family::vecmath) != ::nanonet::Isa::ref)       \
      return NAME##_v3 ARGS;                                                            \
    return NAME##_v0 ARGS;                                                              \
  }
// The same for a BODY that is a template on the vector width in bytes it should use (its first
// template argument): 64 in the AVX-512 copy, 32 in the others.
#define NN_ISA_CLONES_VB(RET, NAME, PARAMS, ARGS, BODY) \
  NN_ISA_CLONES_2(RET, NAME, PARAMS, ARGS, BODY<64>, BODY<32>)
#define NN_ISA_CLONES_F64_VB(RET, NAME, PARAMS, ARGS, BODY) \
  NN_ISA_CLONES_F64(RET, NAME, PARAMS, ARGS, BODY<32>)
#else
#define NN_ISA_CLONES(RET, NAME, PARAMS, ARGS, BODY) \
  RET NAME PARAMS { return BODY ARGS; }
#define NN_ISA_CLONES_F64(RET, NAME, PARAMS, ARGS, BODY) \
  RET NAME PARAMS { return BODY ARGS; }
#define NN_ISA_CLONES_VB(RET, NAME, PARAMS, ARGS, BODY) \
  RET NAME PARAMS { return BODY<32> ARGS; }
#define NN_ISA_CLONES_F64_VB(RET, NAME, PARAMS, ARGS, BODY) \
  RET NAME PARAMS { return BODY<32> ARGS; }
#endif

#ifdef _OPENMP
#define NN_PRAGMA_SIMD _Pragma("omp simd")
#define NN_PRAGMA(text) _Pragma(#text)
// Vectorised reductions: the lanes' partial sums / maxima combine in an order fixed by the
// compiled copy (it may differ between ISAs by rounding, never between thread counts).
#define NN_SIMD_SUM(var) NN_PRAGMA(omp simd reduction(+ : var))
#define NN_SIMD_MAX(var) NN_PRAGMA(omp simd reduction(max : var))
#else
#define NN_PRAGMA_SIMD
#define NN_SIMD_SUM(var)
#define NN_SIMD_MAX(var)
#endif

namespace nanonet {
namespace vm {

namespace detail {

#if defined(__has_builtin)
#if __has_builtin(__builtin_bit_cast)
#define NN_VM_HAVE_BIT_CAST 1
#endif
#endif

inline std::uint32_t bits(float x) {
#ifdef NN_VM_HAVE_BIT_CAST
  return __builtin_bit_cast(std::uint32_t, x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
inline std::uint64_t bits(double x) {
#ifdef NN_VM_HAVE_BIT_CAST
  return __builtin_bit_cast(std::uint64_t, x);
#else
  std::uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
inline float from_bits(std::uint32_t u) {
#ifdef NN_VM_HAVE_BIT_CAST
  return __builtin_bit_cast(float, u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
inline double from_bits(std::uint64_t u) {
#ifdef NN_VM_HAVE_BIT_CAST
  return __builtin_bit_cast(double, u);
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// c ? a : b through a bit mask. A plain ?: on floats is kept as a branch by GCC (without
// fast-math it cannot become min/max, and jump threading then splits the loop body), which stops
// vectorisation; a mask is straight-line integer code that becomes compare + and/or (or blend).
inline float select(bool c, float a, float b) {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}
inline double select(bool c, double a, double b) {
  const std::uint64_t m = 0u - static_cast<std::uint64_t>(c);
  return from_bits((bits(a) & m) | (bits(b) & ~m));
}

// Clamp in which a NaN x passes through (both comparisons are false).
inline float clamp(float x, float lo, float hi) {
  x = select(hi < x, hi, x);
  return select(x < lo, lo, x);
}
inline double clamp(double x, double lo, double hi) {
  x = select(hi < x, hi, x);
  return select(x < lo, lo, x);
}

}  // namespace detail

// c ? a : b without a branch, for hot loops that must vectorise (see detail::select).
using detail::select;

// ---------------------------------------------------------------------------------------------
// exp

inline float exp(float x) {
  // exp(100) overflows and exp(-110) underflows to 0 in float, so clamping there changes no
  // answer and keeps n within [-159, 145]: each half of 2^n stays a normal float.
  const float xc = detail::clamp(x, -110.0f, 100.0f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc * 1.44269504088896341f + magic;
  const float nf = t - magic;  // n = round(x * log2(e)), exact
  const std::uint32_t n = detail::bits(t) - detail::bits(magic);  // n mod 2^32
  const float t1 = nf * 0.5f + magic;
  const std::uint32_t n1 = detail::bits(t1) - detail::bits(magic);  // ~ n / 2
  const std::uint32_t n2 = n - n1;
  // r = x - n ln 2, with ln 2 = C1 + C2 and C1 = 0.693359375 (9 bits: n * C1 is exact).
  float r = xc - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  // exp(r) = 1 + r + r^2 P(r) on |r| <= ln(2) / 2.
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = (p * (r * r) + r) + 1.0f;
  const float s1 = detail::from_bits((n1 + 127u) << 23);
  const float s2 = detail::from_bits((n2 + 127u) << 23);
  return (er * s1) * s2;
}

inline double exp(double x) {
  // exp(720) overflows and exp(-760) underflows to 0 in double; n stays within [-1097, 1039].
  const double xc = detail::clamp(x, -760.0, 720.0);
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = xc * 1.4426950408889634074 + magic;
  const double nf = t - magic;
  const std::uint64_t n = detail::bits(t) - detail::bits(magic);
  const double t1 = nf * 0.5 + magic;
  const std::uint64_t n1 = detail::bits(t1) - detail::bits(magic);
  const std::uint64_t n2 = n - n1;
  // ln 2 = C1 + C2, C1 = 0.693145751953125 (few bits: n * C1 is exact).
  double r = xc - nf * 6.93145751953125e-1;
  r = r - nf * 1.42860682030941723212e-6;
  // exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)).
  const double rr = r * r;
  double pp = 1.26177193074810590878e-4;
  pp = pp * rr + 3.02994407707441961300e-2;
  pp = pp * rr + 9.99999999999999999910e-1;
  const double px = r * pp;
  double q = 3.00198505138664455042e-6;
  q = q * rr + 2.52448340349684104192e-3;
  q = q * rr + 2.27265548208155028766e-1;
  q = q * rr + 2.00000000000000000009e0;
  const double er = 1.0 + 2.0 * (px / (q - px));
  const double s1 = detail::from_bits((n1 + 1023u) << 52);
  const double s2 = detail::from_bits((n2 + 1023u) << 52);
  return (er * s1) * s2;
}

// ---------------------------------------------------------------------------------------------
// sigmoid = 1 / (1 + exp(-x))

inline float sigmoid(float x) {
  const float e = exp(-std::fabs(x));  // in (0, 1]
  const float s = 1.0f / (1.0f + e);
  return detail::select(x < 0.0f, e * s, s);
}

inline double sigmoid(double x) {
  const double e = exp(-std::fabs(x));
  const double s = 1.0 / (1.0 + e);
  return detail::select(x < 0.0, e * s, s);
}

// ---------------------------------------------------------------------------------------------
// tanh

inline float tanh(float x) {
  const float a = std::fabs(x);
  // |x| < 0.625: x + x z P(z), z = x^2.
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = (p * z) * x + x;
  // otherwise 1 - 2 / (exp(2|x|) + 1): exp(2|x|) >= 3.49, no cancellation; inf gives 1.
  const float big = 1.0f - 2.0f / (exp(2.0f * a) + 1.0f);
  const float big_signed = detail::select(x < 0.0f, -big, big);
  return detail::select(a < 0.625f, small, big_signed);
}

inline double tanh(double x) {
  const double a = std::fabs(x);
  // |x| < 0.625: x + x z P(z) / Q(z), z = x^2.
  const double z = x * x;
  double p = -9.64399179425052238628e-1;
  p = p * z - 9.92877231001918586564e1;
  p = p * z - 1.61468768441708447952e3;
  double q = z + 1.12811678491632931402e2;
  q = q * z + 2.23548839060100448583e3;
  q = q * z + 4.84406305325125486048e3;
  const double small = x + x * (z * (p / q));
  const double big = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
  const double big_signed = detail::select(x < 0.0, -big, big);
  return detail::select(a < 0.625, small, big_signed);
}

// ---------------------------------------------------------------------------------------------
// Spans: y[i] = sigmoid(x[i]) / tanh(x[i]) for i < n (y == x allowed), for the loops of
// activations, Dense epilogues and the recurrent gate passes. float on the AVX-512 path runs
// sigmoid_span_v4 / tanh_span_v4 (vecmath_avx512.cpp: the same formulas in intrinsics, 1.2-1.35x
// the auto-vectorised loop); everything else the inline loop, vectorised for the copy it is
// inlined into. Call them from inside an ISA-cloned body: the check is one load and compare.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NN_VM_SPANS_V4 1
void sigmoid_span_v4(float* y, const float* x, index_t n);
void tanh_span_v4(float* y, const float* x, index_t n);
#else
#define NN_VM_SPANS_V4 0
#endif

template <typename T>
inline bool use_span_v4() {
#if NN_VM_SPANS_V4
  return std::is_same<T, float>::value &&
         ::nanonet::family_isa(::nanonet::Family::vecmath) == ::nanonet::Isa::avx512;
#else
  return false;
#endif
}

// sigmoid_span(y, x, n) and tanh_span(y, x, n).
#if NN_VM_SPANS_V4
#define NN_VM_SPAN_V4_CALL(NAME)                                                             \
  if (use_span_v4<T>()) {                                                                    \
    NAME##_span_v4(reinterpret_cast<float*>(y), reinterpret_cast<const float*>(x), n);     \
    return;                                                                                  \
  }
#else
#define NN_VM_SPAN_V4_CALL(NAME)
#endif
#define NN_VM_SPAN(NAME)                                                                     \
  template <typename T>                                                                      \
  inline void NAME##_span(T* y, const T* x, index_t n) {                                     \
    NN_VM_SPAN_V4_CALL(NAME)                                                                 \
    NN_PRAGMA_SIMD                                                                           \
    for (index_t i = 0; i < n; ++i) y[i] = NAME(x[i]);                                       \
  }
NN_VM_SPAN(sigmoid)
NN_VM_SPAN(tanh)
#undef NN_VM_SPAN
#undef NN_VM_SPAN_V4_CALL

}  // namespace vm
}  // namespace nanonet
