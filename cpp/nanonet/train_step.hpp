// train_step: one whole training step of a chain of Dense layers in one call: forward, loss,
// backward, optimizer update. What a Sequential of Dense layers does step by step from Python
// (models/training.py, Trainer._dense_chain_step), with the same kernels called in the same
// order on the same arguments, so the results are bit-identical to that path; it only saves the
// Python between the kernels (about 45 of the 65 us of a tiny model's train_on_batch).
//
// Forward:  a_0 = x;  a_l = f_l(a_{l-1} kernel_l + bias_l)      (dense_forward)
// Loss:     not fused: value, g = loss(y_true, a_L)             (loss_dense / loss_sparse)
//           fused (softmax output trained on its logits a_L, f_L linear here):
//             g = d softmax-cross-entropy / d a_L             (softmax_cross_entropy)
//             p = softmax(a_L), value = cross-entropy of p     (Keras's value, on clipped p)
// Backward: dense_backward from the last layer to the first (no dx for the first).
// Update:   every kernel, then bias, with its gradient: SGD (velocity when momentum > 0) or Adam,
//           hyper-parameters as given (the caller evaluates the learning-rate schedule and
//           counts the step). Updates start after the whole backward (which reads the kernels).
// y_pred (B, C) receives a_L (or p when fused): what the caller's metrics see.
#pragma once
#include <cstdint>
#include <vector>

#include "nanonet/activations.hpp"
#include "nanonet/losses.hpp"
#include "nanonet/optimizers.hpp"
#include "nanonet/runtime.hpp"

namespace nanonet {

template <typename T>
struct DenseChainLayer {
  T* kernel;       // (in, out), updated in place
  T* bias;         // (out) or null
  index_t in, out;
  Activation act;  // linear for a fused softmax output
  // Optimizer slots of the kernel [0] and the bias [1]: SGD velocity (null when momentum is
  // 0) in [.][0]; Adam m in [.][0], v in [.][1].
  T* slots[2][2];
};

struct DenseChainOptimizer {
  bool adam = false;
  SgdHyper sgd;
  AdamHyper adam_hyper;
  GradClip clip;
};

// One step; returns the loss value. y_true (B, C) of T, or ids (B) when loss is
// sparse_categorical_crossentropy (exactly one non-null).
template <typename T>
double dense_chain_train_step(T* y_pred, const T* x, index_t B,
                              const std::vector<DenseChainLayer<T>>& layers, Loss loss,
                              bool fused_softmax, bool from_logits, const T* y_true,
                              const std::int64_t* ids, const DenseChainOptimizer& opt);

}  // namespace nanonet
