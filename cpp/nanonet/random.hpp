// random: counter-based random numbers for DP-SGD's Gaussian noise.
//
// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a bijection of a 128-bit counter (four 32-bit words c0..c3) under a 64-bit key
// (k0, k1), ten rounds of
//   (hi0, lo0) = M0 * c0, (hi1, lo1) = M1 * c2            (32 x 32 -> 64-bit products)
//   (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
// with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the key bumped by (0x9E3779B9, 0xBB67AE85) after
// every round. The output is the final counter state: four uniform 32-bit words per block.
// Checked against the authors' known-answer vectors (Random123's kat_vectors).
//
// Gaussian noise (Box-Muller): element i of an array of n is a pure function of (key, counter,
// i), so the values do not depend on the thread count or on how the array is split.
// Elements go in chunks of 64: chunk q uses the 16 blocks counter + 16 q + l (l = 0..15, a
// 128-bit addition), and element 64 q + 16 m + l comes from block 16 q + l's words w0..w3:
//   u1 = (w0 >> 1) 2^-31 + 2^-32 in (0, 1] and u2 = (w1 >> 8) 2^-24 in [0, 1)   (pair 0)
//   u1 = (w2 >> 1) 2^-31 + 2^-32,            u2 = (w3 >> 8) 2^-24              (pair 1)
//   m = 0: r0 cos(2 pi u2_0)   m = 1: r0 sin(2 pi u2_0)    r = sqrt(-2 ln u1)
//   m = 2: r1 cos(2 pi u2_1)   m = 3: r1 sin(2 pi u2_1)
// (u1 in float arithmetic, so that float and double outputs share one sequence). n elements
// consume 16 ceil(n / 64) blocks. The normals are computed in float32 (a Cephes-style log and
// sin/cos on [-pi/4, pi/4], a few ulp) for both output dtypes; |z| <= sqrt(64 ln 2) ~ 6.66.
//
// gaussian_noise: out[i] = alpha * z_i (beta == 0, out never read) or
//                 out[i] = beta * out[i] + alpha * z_i (accumulate, in place).
// DP-SGD calls it with beta = 1 / B and alpha = sigma C / B: noise added to the summed clipped
// gradient and divided by the batch size in one pass.
// Threads: an OpenMP loop over whole chunks when n >= kNoiseParallel, else the calling thread.
// The SIMD copies (NN_ISA_CLONES, the vecmath family) generate the normals into a buffer of 16
// chunks at a time; the scalar *_ref (double-precision std::log, std::cos, std::sin) is the
// specification they are tested against.
#pragma once
#include <cstdint>

#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kNoiseChunk = 64;             // elements per 16 Philox blocks
constexpr index_t kNoiseParallel = index_t(1) << 16;

// out (n, 4) words for the counters ctr (n, 4) under key (k0, k1): one Philox4x32-10 each.
void philox4x32(uint32_t* out, const uint32_t* ctr, index_t n, uint32_t k0, uint32_t k1);

// key: k0 = low word, k1 = high word of a 64-bit key; counter (lo, hi) a 128-bit counter.
template <typename T>
void gaussian_noise(T* out, index_t n, uint64_t key, uint64_t counter_lo, uint64_t counter_hi,
                    T alpha, T beta, bool accumulate);

template <typename T>
void gaussian_noise_ref(T* out, index_t n, uint64_t key, uint64_t counter_lo,
                        uint64_t counter_hi, T alpha, T beta, bool accumulate);

}  // namespace nanonet
