// vm::sigmoid_span_v4 / vm::tanh_span_v4: the float sigmoid and tanh of vecmath.hpp over a span,
// written in AVX-512 intrinsics (the AVX-512 copies of the span loops call them; see
// vm::use_span_v4). The same formulas and polynomials as vm::sigmoid / vm::tanh; what the
// auto-vectorised copies could not use: vscalefps for 2^n (one instruction, overflow to inf and
// gradual underflow handled), vrndscaleps for n, mask registers for the selects, and a masked
// last vector instead of a scalar remainder. Measured (a 1 M-element loop, this file's twin in
// C): tanh 0.64 -> 0.54 ms, sigmoid 0.55 -> 0.41 ms; accuracy as the portable path (max relative
// error 1.2 ulp tanh, 1.6 ulp sigmoid over the whole range).
#include "nanonet/vecmath.hpp"

#if NN_VM_SPANS_V4
#include <immintrin.h>

namespace nanonet {
namespace vm {

namespace {

// exp(x): clamp to [-110, 100] (NaN passes), n = round(x log2 e), r = x - n ln 2 in two pieces,
// exp(r) = 1 + r + r^2 P(r), times 2^n.
NN_TARGET_V4 inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.0f), _mm512_min_ps(_mm512_set1_ps(100.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(er, n);
}

// sigmoid: e = exp(-|x|), s = 1 / (1 + e); x < 0 gives e s.
NN_TARGET_V4 inline __m512 sigmoid16(__m512 x) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
  const __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_mul_ps(s, neg, e, s);
}

// tanh: |x| < 0.625: x + x z P(z), z = x^2; else 1 - 2 / (exp(2 |x|) + 1) with x's sign
// (|x| clamped at 10 first: tanh(10) rounds to 1 in float, and exp stays finite).
NN_TARGET_V4 inline __m512 tanh16(__m512 x) {
  const __m512 a = _mm512_abs_ps(x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __m512 e =
      exp16(_mm512_mul_ps(_mm512_set1_ps(2.0f), _mm512_min_ps(_mm512_set1_ps(10.0f), a)));
  const __m512 big = _mm512_fnmadd_ps(
      _mm512_set1_ps(2.0f),
      _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))),
      _mm512_set1_ps(1.0f));
  const __m512 sign = _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u))));
  const __m512 big_signed = _mm512_or_ps(big, sign);
  const __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(is_small, big_signed, small);
}

struct Sigmoid16 {
  NN_TARGET_V4 __m512 operator()(__m512 v) const { return sigmoid16(v); }
};
struct Tanh16 {
  NN_TARGET_V4 __m512 operator()(__m512 v) const { return tanh16(v); }
};

template <typename F>
NN_TARGET_V4 inline void span16(float* y, const float* x, index_t n, F f) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

NN_TARGET_V4 void sigmoid_span_v4(float* y, const float* x, index_t n) {
  span16(y, x, n, Sigmoid16{});
}

NN_TARGET_V4 void tanh_span_v4(float* y, const float* x, index_t n) {
  span16(y, x, n, Tanh16{});
}

}  // namespace vm
}  // namespace nanonet

#endif  // NN_VM_SPANS_V4
