// gemm: C = alpha * op(A) * op(B) + beta * C, then an optional epilogue on each finished tile.
//
// Shapes (row-major, any leading dimension >= the row length):
//   op(A) is M x K: A is M x K (lda >= K), or K x M when trans_a (lda >= M)
//   op(B) is K x N: B is K x N (ldb >= N), or N x K when trans_b (ldb >= K)
//   C is M x N (ldc >= N); overwritten when beta == 0 (C is never read then, it may hold NaN),
//   accumulated into otherwise.
//
// Algorithm (BLIS five loops): jc over NC columns of C; pc over KC of the inner dimension, pack
// a KC x NC block of B into NR-wide panels (shared by all threads); ic over MC rows, pack an
// MC x KC block of A into MR-tall panels; jr over NR panels; ir over MR panels -> micro-kernel,
// which computes one MR x NR tile from two packed panels. alpha is folded into the packing of A.
// Packing zero-pads edge panels, so micro-kernels have no edge loops; edge tiles are written
// through a small buffer.
//
// Micro-kernels: ukernel_ref (portable C++), ukernel_avx2_6x16 / _6x8 (AVX2 + FMA),
// ukernel_avx512_12x32 / _12x16 (AVX-512F). One is chosen at import (runtime.hpp, active_isa)
// through the UKernel function-pointer signature; no file is compiled with -march flags, the
// SIMD kernels carry target attributes.
//
// Threads: one OpenMP region per call. When M has at least as many MC blocks as threads, the ic
// loop is split between threads (each packs its own A block); otherwise the threads share one
// packed A block and split the jr loop. B is packed cooperatively. Calls with fewer than
// kGemmParallelFlops flops run on one thread. Each C element is written by exactly one thread,
// and its value does not depend on the thread count (the K order of accumulation is fixed).
//
// Epilogue: if given, epilogue.fn(c, ldc, m, n, row0, col0, ctx) is called once for every
// finished block of C (after the last K block), with c pointing at C(row0, col0), while the
// block is still in cache. Dense uses it to add the bias and apply the activation.
#pragma once
#include <cstdlib>
#include <memory>

#include "nanonet/runtime.hpp"

namespace nanonet {

template <typename T>
struct GemmEpilogue {
  void (*fn)(T* c, index_t ldc, index_t m, index_t n, index_t row0, index_t col0, const void* ctx);
  const void* ctx;
};

// Micro-kernel: acc(MR x NR) = sum_k a[k*MR + r] * b[k*ldb + j] over kc steps, then
// C[r, j] = acc + beta * C[r, j] for r < m, j < n (beta == 0: C is not read). b is a packed
// panel; ldb is its row stride (NR for packed panels; the argument lets a kernel read B rows in
// place).
template <typename T>
using UKernelFn = void (*)(index_t kc, const T* a, const T* b, index_t ldb, T* c, index_t ldc,
                           T beta, index_t m, index_t n);

constexpr index_t kMaxEdgeRows = 12;  // the largest mr

template <typename T>
struct UKernel {
  UKernelFn<T> fn;
  index_t mr, nr;      // tile
  index_t mc, kc, nc;  // cache blocks (mc multiple of mr, nc multiple of nr)
  const char* name;
  // Optional kernels for the last m < mr rows of a block (same packed layout, same signature):
  // rows_fn[m] computes only m rows. nullptr: the full kernel is used and the rest discarded.
  UKernelFn<T> rows_fn[kMaxEdgeRows] = {};
};

// Blocking constants, one place. KC x NR of B (16 KB) stays in L1, MC x KC of A in L2,
// KC x NC of B in L3.
struct GemmBlocking {
  index_t mr, nr, mc, kc, nc;
};
constexpr GemmBlocking kBlockRefF32{6, 16, 144, 256, 4080};
constexpr GemmBlocking kBlockRefF64{6, 8, 72, 256, 4080};
constexpr GemmBlocking kBlockAvx2F32{6, 16, 144, 256, 4080};
constexpr GemmBlocking kBlockAvx2F64{6, 8, 72, 256, 4080};
constexpr GemmBlocking kBlockAvx512F32{12, 32, 144, 256, 4096};
constexpr GemmBlocking kBlockAvx512F64{12, 16, 72, 256, 4096};
constexpr double kGemmParallelFlops = 2.0e6;  // ~25 us on one core: below it, forking costs more than it gains

// The micro-kernel the packed driver uses for the active ISA.
template <typename T>
const UKernel<T>& gemm_ukernel();
template <typename T>
const UKernel<T>& gemm_ukernel_for(Isa isa);

// Optimised GEMM (packed driver + active micro-kernel).
template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
          index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc,
          const GemmEpilogue<T>* epilogue = nullptr);

// The same on the calling thread only (no parallel region): for callers that decide their work
// is too small to be worth a team (the LSTM's small-batch calls).
template <typename T>
void gemm_serial(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha,
                 const T* A, index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc,
                 const GemmEpilogue<T>* epilogue = nullptr);

// Plain scalar triple loop: the specification the fast path is tested against. Single thread.
template <typename T>
void gemm_ref(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
              index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc);

// ---------------------------------------------------------------------------------------------
// Pre-packed B, for a matrix used in many products (the LSTM recurrent kernel: packed once per
// sequence, used at every step). Layout: KC blocks of the inner dimension, each holding all
// ceil(N / nr) panels of nr columns: data[pc * Np + q * nr * kc_blk + k * nr + j], Np = panels*nr.
// It records the micro-kernel it was packed for, so a later set_isa() cannot mismatch it.
struct AlignedDelete {
  void operator()(void* p) const { std::free(p); }
};

template <typename T>
struct PackedB {
  std::unique_ptr<T[], AlignedDelete> data;
  const UKernel<T>* uk = nullptr;
  index_t K = 0, N = 0;
  index_t panels() const { return uk ? (N + uk->nr - 1) / uk->nr : 0; }
  index_t nr() const { return uk ? uk->nr : 1; }
};

// Pack op(B) (K x N) for the active micro-kernel. Single-threaded; allocates.
template <typename T>
PackedB<T> pack_b(bool trans_b, index_t K, index_t N, const T* B, index_t ldb);

// Single-threaded, callable inside an OpenMP parallel region: the columns of panels [q0, q1)
// of C = alpha * op(A) * Bp + beta * C, i.e. C[:, q0*nr : min(q1*nr, N)]. A is packed into a
// per-thread scratch buffer. beta == 0 never reads C.
template <typename T>
void gemm_packed_serial(bool trans_a, index_t M, T alpha, const T* A, index_t lda,
                        const PackedB<T>& Bp, index_t q0, index_t q1, T beta, T* C, index_t ldc);

}  // namespace nanonet
