// nanonet._core: the compiled kernels. Python code reaches it only through nanonet.ops.
#include "bindings/common.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "nanonet compiled kernels (C++17 + OpenMP). Use nanonet.ops, not this module.";
  nanonet::register_runtime(m);
  nanonet::register_gemm(m);
  nanonet::register_activations(m);
  nanonet::register_dense(m);
  nanonet::register_losses(m);
  nanonet::register_embedding(m);
  nanonet::register_lstm(m);
  nanonet::register_optimizers(m);
  nanonet::register_normalization(m);
  nanonet::register_pooling(m);
  nanonet::register_attention(m);
  nanonet::register_per_example(m);
  nanonet::register_random(m);
  nanonet::register_conv(m);
  nanonet::register_train_step(m);

  nanonet::register_gru(m);
}
