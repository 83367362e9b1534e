#include "nanonet/random.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "nanonet/vecmath.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key bumps (golden ratio, sqrt(3)-1)
constexpr int kLanes = 16;                                // blocks per chunk of 64 elements
constexpr uint64_t kLow = 0xFFFFFFFFu;
constexpr index_t kBufChunks = 16;                        // chunks per generated buffer

// Ten rounds on one block, in place.
void philox_block(uint32_t x[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(kM0) * x[0];
    const uint64_t p1 = uint64_t(kM1) * x[2];
    const uint32_t y0 = uint32_t(p1 >> 32) ^ x[1] ^ k0;
    const uint32_t y2 = uint32_t(p0 >> 32) ^ x[3] ^ k1;
    x[0] = y0;
    x[1] = uint32_t(p1);
    x[2] = y2;
    x[3] = uint32_t(p0);
    k0 += kW0;
    k1 += kW1;
  }
}

// The 128-bit counter (lo, hi) + off as four words.
void counter_words(uint32_t x[4], uint64_t lo, uint64_t hi, uint64_t off) {
  const uint64_t l = lo + off;
  const uint64_t h = hi + (l < lo ? 1u : 0u);
  x[0] = uint32_t(l);
  x[1] = uint32_t(l >> 32);
  x[2] = uint32_t(h);
  x[3] = uint32_t(h >> 32);
}

// r = sqrt(-2 ln u1) for u1 = (w >> 1) 2^-31 + 2^-32 (float arithmetic, so in (0, 1], normal).
// ln: Cephes's logf (x = 2^e m, m in [sqrt(1/2), sqrt(2)), a degree-9 polynomial in m - 1,
// ln 2 in two pieces), no special cases: the argument is a normal number in [2^-32, 1].
NN_ALWAYS_INLINE float box_muller_radius(uint32_t w) {
  const float u = float(int32_t(w >> 1)) * 0x1p-31f + 0x1p-32f;
  const uint32_t ub = vm::detail::bits(u);
  int32_t e = int32_t(ub >> 23) - 126;                               // u = 2^e * m, m in [0.5, 1)
  float m = vm::detail::from_bits((ub & 0x007fffffu) | 0x3f000000u);
  const bool lo = m < 0.707106781186547524f;
  e -= int32_t(lo);
  m = vm::select(lo, m + m, m) - 1.0f;
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  const float ef = float(e);
  float y = p * m * z;
  y += ef * -2.12194440e-4f;
  y += -0.5f * z;
  const float ln = (m + y) + ef * 0.693359375f;
  return std::sqrt(-2.0f * ln);
}

// (cos, sin) of 2 pi u2 for u2 = (w >> 8) 2^-24: quadrant q = round(4 u2) taken from the integer,
// a = 2 pi u2 - q pi / 2 in [-pi/4, pi/4], Cephes's sinf / cosf polynomials, then the quadrant's
// swap and signs as integer operations.
NN_ALWAYS_INLINE void box_muller_angle(uint32_t w, float& c_out, float& s_out) {
  const int32_t m = int32_t(w >> 8);
  const int32_t q = (m + (1 << 21)) >> 22;
  const float a = float(m - (q << 22)) * (1.57079632679489661923f * 0x1p-22f);
  const float z = a * a;
  const float s = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * a + a;
  const float c = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                   4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
  const uint32_t qq = uint32_t(q) & 3u;
  const bool swap = (qq & 1u) != 0;
  const uint32_t cneg = ((qq + 1u) & 2u) << 30;  // quadrants 1, 2: cos < 0
  const uint32_t sneg = (qq & 2u) << 30;         // quadrants 2, 3: sin < 0
  c_out = vm::detail::from_bits(vm::detail::bits(vm::select(swap, s, c)) ^ cneg);
  s_out = vm::detail::from_bits(vm::detail::bits(vm::select(swap, c, s)) ^ sneg);
}

// The normals of chunks q0 .. q0 + nq - 1 into z (64 nq floats; the layout of random.hpp);
// then, when out is given, out[j] = alpha z[j] (+ beta out[j] when accumulate) for j < n_out
// (float outputs: the pass runs in this ISA's copy while z is in L1).
// W: the lane type of the Philox words (see below).
template <typename W>
NN_ALWAYS_INLINE void normals_body(float* z, index_t nq, uint64_t key, uint64_t lo, uint64_t hi,
                                   index_t q0, float* out, index_t n_out, float alpha,
                                   float beta, bool accumulate) {
  const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  for (index_t q = 0; q < nq; ++q) {
    // W = uint64_t keeps the words in 64-bit lanes with only their low 32 bits meaningful (the
    // bits above, never shifted down or multiplied, are dropped at the end): the products are
    // then plain 64-bit lane multiplies, which AVX-512 has (vpmullq; 1.4x faster than the
    // widening form there). W = uint32_t: widening 32 x 32 -> 64-bit products, better on AVX2
    // and SSE2, which lack a 64-bit multiply.
    alignas(64) W x0[kLanes], x1[kLanes], x2[kLanes], x3[kLanes];
    uint32_t base[4];
    counter_words(base, lo, hi, uint64_t(q0 + q) * kLanes);
    const uint64_t blo = uint64_t(base[0]) | (uint64_t(base[1]) << 32);
    if (blo <= ~uint64_t(0) - kLanes) {  // no carry into the high 64 bits within the chunk
      NN_PRAGMA_SIMD
      for (int l = 0; l < kLanes; ++l) {
        const uint64_t c = blo + uint64_t(l);
        x0[l] = W(c & kLow);
        x1[l] = W(c >> 32);
        x2[l] = base[2];
        x3[l] = base[3];
      }
    } else {
      for (int l = 0; l < kLanes; ++l) {
        uint32_t w[4];
        counter_words(w, lo, hi, uint64_t(q0 + q) * kLanes + uint64_t(l));
        x0[l] = w[0];
        x1[l] = w[1];
        x2[l] = w[2];
        x3[l] = w[3];
      }
    }
    uint64_t rk0 = k0, rk1 = k1;
    for (int r = 0; r < 10; ++r) {
      NN_PRAGMA_SIMD
      for (int l = 0; l < kLanes; ++l) {
        const uint64_t p0 = (uint64_t(x0[l]) & kLow) * uint64_t(kM0);
        const uint64_t p1 = (uint64_t(x2[l]) & kLow) * uint64_t(kM1);
        x0[l] = W((p1 >> 32) ^ x1[l] ^ rk0);
        x2[l] = W((p0 >> 32) ^ x3[l] ^ rk1);
        x1[l] = W(p1);
        x3[l] = W(p0);
      }
      rk0 = uint32_t(rk0 + kW0);
      rk1 = uint32_t(rk1 + kW1);
    }
    float* zq = z + q * kNoiseChunk;
    NN_PRAGMA_SIMD
    for (int l = 0; l < kLanes; ++l) {
      float c0, s0, c1, s1;
      box_muller_angle(uint32_t(x1[l]), c0, s0);
      box_muller_angle(uint32_t(x3[l]), c1, s1);
      const float r0 = box_muller_radius(uint32_t(x0[l]));
      const float r1 = box_muller_radius(uint32_t(x2[l]));
      zq[l] = r0 * c0;
      zq[kLanes + l] = r0 * s0;
      zq[2 * kLanes + l] = r1 * c1;
      zq[3 * kLanes + l] = r1 * s1;
    }
  }
  if (!out) return;
  if (accumulate) {
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < n_out; ++j) out[j] = beta * out[j] + alpha * z[j];
  } else {
    NN_PRAGMA_SIMD
    for (index_t j = 0; j < n_out; ++j) out[j] = alpha * z[j];
  }
}

#define NN_NORMALS_PARAMS                                                                    \
  float *z, index_t nq, uint64_t key, uint64_t lo, uint64_t hi, index_t q0, float *out,      \
      index_t n_out, float alpha, float beta, bool accumulate
#define NN_NORMALS_ARGS z, nq, key, lo, hi, q0, out, n_out, alpha, beta, accumulate
#ifdef NN_TARGET_V4
NN_TARGET_V4 void normals_chunks_v4(NN_NORMALS_PARAMS) {
  normals_body<uint64_t>(NN_NORMALS_ARGS);
}
NN_TARGET_V3 void normals_chunks_v3(NN_NORMALS_PARAMS) {
  normals_body<uint32_t>(NN_NORMALS_ARGS);
}
#endif
void normals_chunks_v0(NN_NORMALS_PARAMS) { normals_body<uint32_t>(NN_NORMALS_ARGS); }

// The copy for family_isa(vecmath), as NN_ISA_CLONES dispatches (vecmath.hpp).
void normals_chunks(NN_NORMALS_PARAMS) {
#ifdef NN_TARGET_V4
  switch (family_isa(Family::vecmath)) {
    case Isa::avx512: return normals_chunks_v4(NN_NORMALS_ARGS);
    case Isa::avx2: return normals_chunks_v3(NN_NORMALS_ARGS);
    default: break;
  }
#endif
  normals_chunks_v0(NN_NORMALS_ARGS);
}
#undef NN_NORMALS_PARAMS
#undef NN_NORMALS_ARGS

// Elements [i0, i1) of out (i0 a multiple of 64), one thread.
template <typename T>
void noise_span(T* out, index_t i0, index_t i1, uint64_t key, uint64_t lo, uint64_t hi, T alpha,
                T beta, bool accumulate) {
  alignas(64) float z[kBufChunks * kNoiseChunk];
  for (index_t i = i0; i < i1; i += kBufChunks * kNoiseChunk) {
    const index_t m = std::min<index_t>(kBufChunks * kNoiseChunk, i1 - i);
    const index_t nq = (m + kNoiseChunk - 1) / kNoiseChunk;
    T* o = out + i;
    if (std::is_same<T, float>::value) {  // generated and applied in one ISA copy
      normals_chunks(z, nq, key, lo, hi, i / kNoiseChunk, reinterpret_cast<float*>(o), m,
                     float(alpha), float(beta), accumulate);
      continue;
    }
    normals_chunks(z, nq, key, lo, hi, i / kNoiseChunk, nullptr, 0, 0.0f, 0.0f, false);
    if (accumulate) {
      for (index_t j = 0; j < m; ++j) o[j] = beta * o[j] + alpha * T(z[j]);
    } else {
      for (index_t j = 0; j < m; ++j) o[j] = alpha * T(z[j]);
    }
  }
}

}  // namespace

void philox4x32(uint32_t* out, const uint32_t* ctr, index_t n, uint32_t k0, uint32_t k1) {
  for (index_t i = 0; i < n; ++i) {
    uint32_t x[4] = {ctr[4 * i], ctr[4 * i + 1], ctr[4 * i + 2], ctr[4 * i + 3]};
    philox_block(x, k0, k1);
    std::copy(x, x + 4, out + 4 * i);
  }
}

template <typename T>
void gaussian_noise(T* out, index_t n, uint64_t key, uint64_t counter_lo, uint64_t counter_hi,
                    T alpha, T beta, bool accumulate) {
  const index_t chunks = (n + kNoiseChunk - 1) / kNoiseChunk;
  const int nt = n >= kNoiseParallel ? int(std::min<index_t>(get_num_threads(), chunks)) : 1;
  if (nt <= 1) {
    noise_span<T>(out, 0, n, key, counter_lo, counter_hi, alpha, beta, accumulate);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const index_t t = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const index_t t = 0, team = 1;
#endif
    const index_t c0 = chunks * t / team, c1 = chunks * (t + 1) / team;
    noise_span<T>(out, c0 * kNoiseChunk, std::min(n, c1 * kNoiseChunk), key, counter_lo,
                  counter_hi, alpha, beta, accumulate);
  }
}

template <typename T>
void gaussian_noise_ref(T* out, index_t n, uint64_t key, uint64_t counter_lo,
                        uint64_t counter_hi, T alpha, T beta, bool accumulate) {
  const double two_pi = 6.283185307179586476925;
  for (index_t i = 0; i < n; ++i) {
    const index_t q = i / kNoiseChunk, m = (i % kNoiseChunk) / kLanes, l = i % kLanes;
    uint32_t w[4];
    counter_words(w, counter_lo, counter_hi, uint64_t(q) * kLanes + uint64_t(l));
    philox_block(w, uint32_t(key), uint32_t(key >> 32));
    const uint32_t wr = w[m < 2 ? 0 : 2], wa = w[m < 2 ? 1 : 3];
    const float u1 = float(int32_t(wr >> 1)) * 0x1p-31f + 0x1p-32f;
    const double u2 = double(wa >> 8) * 0x1p-24;
    const double r = std::sqrt(-2.0 * std::log(double(u1)));
    const double z = (m % 2 == 0) ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2);
    out[i] = accumulate ? beta * out[i] + alpha * T(z) : alpha * T(z);
  }
}

template void gaussian_noise<float>(float*, index_t, uint64_t, uint64_t, uint64_t, float, float,
                                    bool);
template void gaussian_noise<double>(double*, index_t, uint64_t, uint64_t, uint64_t, double,
                                     double, bool);
template void gaussian_noise_ref<float>(float*, index_t, uint64_t, uint64_t, uint64_t, float,
                                        float, bool);
template void gaussian_noise_ref<double>(double*, index_t, uint64_t, uint64_t, uint64_t, double,
                                         double, bool);

}  // namespace nanonet
