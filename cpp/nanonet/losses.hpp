// losses: Keras 3 loss values and their gradients with respect to y_pred, in one pass.
//
// Shapes (row-major, contiguous): y_pred and grad are (P, C): P positions (the product of the
// leading dimensions of the user's (..., C) array: batch, or batch x time) by C outputs or
// classes. y_true is (P, C), or (P) int64 class ids for the sparse loss. weight is (P) or null
// (all ones). loss_p (P) receives each position's unweighted loss (an output).
//
// Per-position loss l_p (eps = 1e-7, clip(q) = min(max(q, eps), 1 - eps) in the dtype T):
//   mse                    mean_c (y_pred - y_true)^2
//   mae                    mean_c |y_pred - y_true|
//   binary_crossentropy    mean_c of  -(y log clip(p) + (1 - y) log(1 - clip(p)))       probs
//                                     max(z, 0) - z y + log(1 + exp(-|z|))              logits
//   categorical_crossentropy  q = p / sum_c p;  -sum_c y_c log clip(q_c)                probs
//                             sum_c y_c (logsumexp(z) - z_c)                            logits
//   sparse_categorical_crossentropy  the categorical loss with y = onehot(id)
// Value = sum_p w_p l_p / P  (Keras's "sum_over_batch_size"), summed in double in position
// order, so it does not depend on the thread count. P == 0 gives 0 (Keras divides with
// divide_no_nan). C == 0 gives NaN for the means (mse, mae, bce) and 0 for the sums (cce).
// grad (overwritten when non-null) = d value / d y_pred, exactly the derivative of the value,
// including the clip (zero gradient where the clip is active, inclusive bounds as in TF) and the
// row normalisation of categorical probabilities:
//   mse 2 (y_pred - y_true) s / C;  mae sign(y_pred - y_true) s / C;  s = w_p / P
//   bce probs (p - y) / (p (1 - p)) s / C inside the clip;  bce logits (sigmoid(z) - y) s / C
//   cce probs (G_c - sum_k G_k q_k) s / sum_k p_k with G_c = -y_c / q_c inside the clip
//   cce logits (softmax(z) sum_k y_k - y) s   (softmax(z) - onehot for one-hot labels)
//
// softmax_cross_entropy is the categorical / sparse loss from logits: the one fused, stable
// kernel for a softmax output layer with cross-entropy (exp via vecmath, per row: max, exp,
// sum, log; the softmax is written straight into the gradient).
//
// Threads: positions are split into one block of rows per thread (static) when P * C >=
// kLossParallelElems; each row is computed by one thread in a fixed order. Sparse ids outside
// [0, C) throw std::invalid_argument (checked before any work) naming the id and its position.
#pragma once
#include <cstdint>
#include <string>

#include "nanonet/runtime.hpp"

namespace nanonet {

enum class Loss {
  mse,
  mae,
  binary_crossentropy,
  categorical_crossentropy,
  sparse_categorical_crossentropy
};

// Throws std::invalid_argument naming `fn`, the bad name and the valid ones.
Loss loss_from_name(const std::string& name, const char* fn = "loss");
const char* loss_name(Loss loss);
const char* loss_valid_names();

constexpr double kLossEpsilon = 1e-7;
constexpr index_t kLossParallelElems = index_t(1) << 15;

// Every loss but the sparse one. Returns the value.
template <typename T>
double loss_dense(T* grad, double* loss_p, const T* y_true, const T* y_pred, const T* weight,
                  index_t P, index_t C, Loss loss, bool from_logits);

// sparse_categorical_crossentropy with int64 ids (P). Returns the value.
template <typename T>
double loss_sparse(T* grad, double* loss_p, const std::int64_t* ids, const T* y_pred,
                   const T* weight, index_t P, index_t C, bool from_logits);

// Fused softmax + categorical cross-entropy from logits: exactly one of y_true (P, C) and
// ids (P) is non-null. dlogits (P, C) overwritten when non-null. Returns the value.
template <typename T>
double softmax_cross_entropy(T* dlogits, double* loss_p, const T* y_true,
                             const std::int64_t* ids, const T* logits, const T* weight,
                             index_t P, index_t C);

}  // namespace nanonet
