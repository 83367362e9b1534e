#include "nanonet/embedding.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanonet {

namespace {

template <typename I>
void check_ids(const char* fn, const I* ids, index_t N, index_t V) {
  index_t n = embedding_find_bad_id(ids, N, V);
  if (n >= 0)
    throw std::invalid_argument(std::string(fn) + ": ids must be in [0, V) = [0, " +
                                std::to_string(V) + "); got " + std::to_string(ids[n]) +
                                " at flat position " + std::to_string(n));
}

int threads_for(double work) {
  return work >= double(kEmbeddingParallelMin) ? get_num_threads() : 1;
}

}  // namespace

template <typename I>
index_t embedding_find_bad_id(const I* ids, index_t N, index_t V) {
  // Branch-free scan in blocks, so the common all-valid case vectorises; locate on a hit.
  constexpr index_t kBlock = 1024;
  for (index_t n0 = 0; n0 < N; n0 += kBlock) {
    const index_t n1 = std::min(N, n0 + kBlock);
    bool bad = false;
    for (index_t n = n0; n < n1; ++n) bad |= (ids[n] < 0) | (int64_t(ids[n]) >= int64_t(V));
    if (bad)
      for (index_t n = n0; n < n1; ++n)
        if (ids[n] < 0 || int64_t(ids[n]) >= int64_t(V)) return n;
  }
  return -1;
}

template <typename T, typename I>
void embedding_forward(T* y, const I* ids, const T* embeddings, index_t N, index_t V, index_t E) {
  check_ids("embedding_forward", ids, N, V);
  const int nthreads = threads_for(double(N) * double(E));
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
  for (index_t n = 0; n < N; ++n)
    std::memcpy(y + n * E, embeddings + index_t(ids[n]) * E, size_t(E) * sizeof(T));
}

template <typename T, typename I>
void embedding_backward(T* dembeddings, const T* dy, const I* ids, index_t N, index_t V,
                        index_t E) {
  check_ids("embedding_backward", ids, N, V);
  // Counting sort of positions by id: start[v] .. start[v + 1] index order[] (ascending n).
  std::vector<index_t> start(size_t(V) + 1, 0);
  for (index_t n = 0; n < N; ++n) ++start[size_t(ids[n]) + 1];
  for (index_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<index_t> order(size_t(std::max<index_t>(N, 1)));
  {
    std::vector<index_t> next(start.begin(), start.end() - 1);
    for (index_t n = 0; n < N; ++n) order[next[size_t(ids[n])]++] = n;
  }
  const index_t* start_p = start.data();
  const index_t* order_p = order.data();
  const int nthreads = threads_for(double(V) * double(E) + double(N) * double(E));
  // Rows split between threads: each dembeddings row is written by exactly one thread.
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
  for (index_t v = 0; v < V; ++v) {
    T* de_v = dembeddings + v * E;
    const index_t s0 = start_p[v], s1 = start_p[v + 1];
    if (s0 == s1) {
      std::fill(de_v, de_v + E, T(0));
      continue;
    }
    std::memcpy(de_v, dy + order_p[s0] * E, size_t(E) * sizeof(T));
    for (index_t s = s0 + 1; s < s1; ++s) {
      const T* dy_n = dy + order_p[s] * E;
      for (index_t e = 0; e < E; ++e) de_v[e] += dy_n[e];
    }
  }
}

template <typename T, typename I>
void embedding_forward_ref(T* y, const I* ids, const T* embeddings, index_t N, index_t V,
                           index_t E) {
  check_ids("embedding_forward_ref", ids, N, V);
  for (index_t n = 0; n < N; ++n)
    for (index_t e = 0; e < E; ++e) y[n * E + e] = embeddings[index_t(ids[n]) * E + e];
}

template <typename T, typename I>
void embedding_backward_ref(T* dembeddings, const T* dy, const I* ids, index_t N, index_t V,
                            index_t E) {
  check_ids("embedding_backward_ref", ids, N, V);
  for (index_t i = 0; i < V * E; ++i) dembeddings[i] = T(0);
  for (index_t n = 0; n < N; ++n)
    for (index_t e = 0; e < E; ++e) dembeddings[index_t(ids[n]) * E + e] += dy[n * E + e];
}

#define NN_EMBEDDING_INSTANTIATE(T, I)                                                       \
  template void embedding_forward<T, I>(T*, const I*, const T*, index_t, index_t, index_t);  \
  template void embedding_backward<T, I>(T*, const T*, const I*, index_t, index_t, index_t); \
  template void embedding_forward_ref<T, I>(T*, const I*, const T*, index_t, index_t,        \
                                            index_t);                                        \
  template void embedding_backward_ref<T, I>(T*, const T*, const I*, index_t, index_t, index_t);

NN_EMBEDDING_INSTANTIATE(float, int32_t)
NN_EMBEDDING_INSTANTIATE(float, int64_t)
NN_EMBEDDING_INSTANTIATE(double, int32_t)
NN_EMBEDDING_INSTANTIATE(double, int64_t)
#undef NN_EMBEDDING_INSTANTIATE

template index_t embedding_find_bad_id<int32_t>(const int32_t*, index_t, index_t);
template index_t embedding_find_bad_id<int64_t>(const int64_t*, index_t, index_t);

}  // namespace nanonet
