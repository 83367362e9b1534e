// runtime: threads and the SIMD code path chosen at import.
//
// Threads: every kernel uses OpenMP with the count set by set_num_threads (default: OpenMP's
// default, i.e. OMP_NUM_THREADS or the number of cores), capped per calling thread by
// set_thread_limit. Without OpenMP everything runs on one thread and set_num_threads only
// records the value.
//
// ISA: detect_isa() reads the CPU once; active_isa() is what the kernels dispatch on. It can be
// lowered (never raised above what the CPU supports) with set_isa(), e.g. to test the portable
// reference path on an AVX2 machine. The environment variable NANONET_ISA (ref, avx2, avx512)
// sets the starting value.
//
// Kernel families: the ISA-specific code falls into three families, each dispatched on its own
// family_isa(f) = min(active_isa(), cap(f)): gemm (the packed micro-kernels), vecmath (every
// NN_ISA_CLONES span/tile loop: activations, softmax, losses, dense epilogues, the LSTM gate
// passes, attention tiles) and lstm (the fused recurrent products of LSTM, GRU and SimpleRNN,
// AVX2 and AVX-512: rnn_detail in recurrent_common.hpp). A cap starts at the
// detected ISA and is lowered by the import-time self-check (nanonet.ops) when a family's fast
// path disagrees with the portable one, so one broken family falls back without the others.
#pragma once
#include <cstddef>
#include <string>

namespace nanonet {

using index_t = std::ptrdiff_t;

void set_num_threads(int n);
// The count kernels use on the calling OS thread: set_num_threads's value, capped by that
// thread's limit when one is set.
int get_num_threads();
// Thread limit of the calling OS thread only (0 = none): kernels called from this thread use at
// most n threads. Lets two threads run one kernel each on their own core (ops.run_pair) without
// each starting a full team. Returns the previous limit; n < 0 throws std::invalid_argument.
int set_thread_limit(int n);
int get_thread_limit();

// Allocator (glibc only; called once at import): large arrays (the recurrent layers' caches
// and scratch, ~10-25 MB a training step) are served from the heap and kept there, instead of
// fresh mmap'd pages each call (measured: ~5000 page faults, about a third of a GRU training
// step at B=32 T=100 H=128). Sets M_MMAP_THRESHOLD = 32 MiB and M_TRIM_THRESHOLD = 64 MiB,
// the values glibc's own dynamic thresholds reach after the first large free; skipped when
// NANONET_MALLOC_TUNING=0 or when MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or
// GLIBC_TUNABLES set them. Returns whether it applied them.
bool tune_allocator();
bool allocator_tuned();

enum class Isa { ref = 0, avx2 = 1, avx512 = 2 };

Isa detect_isa();           // best path this CPU supports
Isa active_isa();           // path the kernels use now
void set_isa(Isa isa);      // throws std::invalid_argument if the CPU lacks it
const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws std::invalid_argument

enum class Family { gemm = 0, vecmath = 1, lstm = 2 };
constexpr int kNumFamilies = 3;
Isa family_isa(Family f);              // what family f dispatches on now
void set_family_cap(Family f, Isa cap); // throws std::invalid_argument above detect_isa()
Isa family_cap(Family f);
const char* family_name(Family f);
Family family_from_name(const std::string& name);  // throws std::invalid_argument

}  // namespace nanonet
