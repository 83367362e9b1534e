// embedding: a lookup table of V rows of width E, gathered by integer ids.
//
// Forward (gather), for every position n of the N ids (ids of any shape, seen as a flat run):
//   y[n, :] = embeddings[ids[n], :]
// Backward (scatter-add), the gradient of sum(y * dy) with respect to the table:
//   dembeddings[v, :] = sum over n with ids[n] == v of dy[n, :]     (zero for ids never seen)
//
// Shapes (row-major, contiguous): ids (N) int32 or int64; embeddings (V, E); y (N, E);
// dy (N, E); dembeddings (V, E). Id type I is int32_t or int64_t, value type T float or double.
//
// Outputs are overwritten: embedding_forward writes all of y, embedding_backward writes all of
// dembeddings (rows without an id become 0). Nothing accumulates into a caller's buffer.
//
// Ids must lie in [0, V). embedding_find_bad_id returns the first position n whose id is out of
// range (or -1); the kernels themselves throw std::invalid_argument naming the id and V when
// given one, before writing anything.
//
// Backward algorithm (deterministic, no atomics): a counting sort of the positions by id
// (count[v], exclusive prefix sum -> start[v], positions written in increasing n, so each
// bucket lists its positions in ascending order), then each dembeddings row v sums its bucket's
// dy rows in that order. The sum for a row therefore never depends on the thread count.
//
// Threads: the gather splits positions between threads (static `omp parallel for`); the backward
// counting sort runs on one thread (O(N + V) integer work) and the row sums split the V rows
// between threads, so every row is written by exactly one thread. Calls below
// kEmbeddingParallelMin elements of work stay on one thread.
//
// *_ref: plain single-thread loops (backward: zero the table, then add dy rows in position
// order), the specification the fast path is tested against.
#pragma once
#include <cstdint>

#include "nanonet/runtime.hpp"

namespace nanonet {

constexpr index_t kEmbeddingParallelMin = 1 << 15;  // elements copied / summed

template <typename I>
index_t embedding_find_bad_id(const I* ids, index_t N, index_t V);

template <typename T, typename I>
void embedding_forward(T* y, const I* ids, const T* embeddings, index_t N, index_t V, index_t E);

template <typename T, typename I>
void embedding_backward(T* dembeddings, const T* dy, const I* ids, index_t N, index_t V,
                        index_t E);

template <typename T, typename I>
void embedding_forward_ref(T* y, const I* ids, const T* embeddings, index_t N, index_t V,
                           index_t E);

template <typename T, typename I>
void embedding_backward_ref(T* dembeddings, const T* dy, const I* ids, index_t N, index_t V,
                            index_t E);

}  // namespace nanonet
