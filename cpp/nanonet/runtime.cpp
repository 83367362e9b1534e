#include "nanonet/runtime.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace nanonet {

namespace {
std::atomic<int> g_threads{0};  // 0 = not set yet: OpenMP's default
thread_local int t_limit = 0;   // this OS thread's cap (0 = none)

Isa initial_isa() {
  Isa best = detect_isa();
  if (const char* env = std::getenv("NANONET_ISA")) {
    try {
      Isa want = isa_from_name(env);
      if (static_cast<int>(want) <= static_cast<int>(best)) return want;
    } catch (const std::invalid_argument&) {
      // an unknown value keeps the detected path
    }
  }
  return best;
}

Isa& isa_state() {
  static Isa isa = initial_isa();
  return isa;
}

std::atomic<int>* family_caps() {
  static std::atomic<int> caps[kNumFamilies] = {
      {static_cast<int>(detect_isa())}, {static_cast<int>(detect_isa())},
      {static_cast<int>(detect_isa())}};
  return caps;
}
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1; got " + std::to_string(n));
  g_threads = n;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

// The count set here is process-wide: every kernel passes get_num_threads() to its parallel
// region, so a Python thread other than the one that called set_num_threads gets it too
// (omp_set_num_threads alone only sets the calling thread's default).
int get_num_threads() {
#ifdef _OPENMP
  int n = g_threads.load();
  if (n <= 0) n = omp_get_max_threads();
#else
  int n = g_threads.load();
  if (n <= 0) n = 1;
#endif
  return t_limit > 0 && t_limit < n ? t_limit : n;
}

int set_thread_limit(int n) {
  if (n < 0)
    throw std::invalid_argument("set_thread_limit: n must be >= 0 (0 = no limit); got " +
                                std::to_string(n));
  const int old = t_limit;
  t_limit = n;
  return old;
}

int get_thread_limit() { return t_limit; }

namespace {
bool g_alloc_tuned = false;
}

bool tune_allocator() {
#if defined(__GLIBC__)
  const char* opt = std::getenv("NANONET_MALLOC_TUNING");
  if (opt && std::string(opt) == "0") return false;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_")) return false;
  const char* tun = std::getenv("GLIBC_TUNABLES");
  if (tun && std::string(tun).find("malloc") != std::string::npos) return false;
  g_alloc_tuned = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1;
  return g_alloc_tuned;
#else
  return false;
#endif
}

bool allocator_tuned() { return g_alloc_tuned; }

Isa detect_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::ref;
}

Isa active_isa() { return isa_state(); }

void set_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(detect_isa()))
    throw std::invalid_argument(std::string("set_isa: this CPU does not support ") + isa_name(isa) +
                                "; best available is " + isa_name(detect_isa()));
  isa_state() = isa;
}

Isa family_cap(Family f) { return static_cast<Isa>(family_caps()[static_cast<int>(f)].load()); }

Isa family_isa(Family f) {
  const int cap = family_caps()[static_cast<int>(f)].load(std::memory_order_relaxed);
  const int isa = static_cast<int>(isa_state());
  return static_cast<Isa>(isa < cap ? isa : cap);
}

void set_family_cap(Family f, Isa cap) {
  if (static_cast<int>(cap) > static_cast<int>(detect_isa()))
    throw std::invalid_argument(std::string("set_family_cap: this CPU does not support ") +
                                isa_name(cap) + "; best available is " + isa_name(detect_isa()));
  family_caps()[static_cast<int>(f)] = static_cast<int>(cap);
}

const char* family_name(Family f) {
  switch (f) {
    case Family::gemm: return "gemm";
    case Family::vecmath: return "vecmath";
    default: return "lstm";
  }
}

Family family_from_name(const std::string& name) {
  if (name == "gemm") return Family::gemm;
  if (name == "vecmath") return Family::vecmath;
  if (name == "lstm") return Family::lstm;
  throw std::invalid_argument("family must be one of 'gemm', 'vecmath', 'lstm'; got '" + name +
                              "'");
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "ref";
  }
}

Isa isa_from_name(const std::string& name) {
  if (name == "ref") return Isa::ref;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  throw std::invalid_argument("isa must be one of 'ref', 'avx2', 'avx512'; got '" + name + "'");
}

}  // namespace nanonet
