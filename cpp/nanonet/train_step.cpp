#include "nanonet/train_step.hpp"

#include <algorithm>
#include <memory>

#include "nanonet/dense.hpp"

namespace nanonet {

namespace {

// Uninitialised T[n] (every buffer here is fully written before it is read).
template <typename T>
std::unique_ptr<T[]> buffer(index_t n) {
  return std::unique_ptr<T[]>(new T[size_t(std::max<index_t>(n, 1))]);
}

template <typename T>
void update(T* p, T* const* slots, const T* g, index_t n, const DenseChainOptimizer& opt) {
  if (opt.adam)
    adam_update<T>(p, slots[0], slots[1], g, n, opt.adam_hyper, opt.clip);
  else
    sgd_update<T>(p, slots[0], g, n, opt.sgd, opt.clip);
}

}  // namespace

template <typename T>
double dense_chain_train_step(T* y_pred, const T* x, index_t B,
                              const std::vector<DenseChainLayer<T>>& layers, Loss loss,
                              bool fused_softmax, bool from_logits, const T* y_true,
                              const std::int64_t* ids, const DenseChainOptimizer& opt) {
  const size_t L = layers.size();
  // Forward: a[l] is layer l's output (B, out_l).
  std::vector<std::unique_ptr<T[]>> a(L);
  const T* in = x;
  for (size_t l = 0; l < L; ++l) {
    const DenseChainLayer<T>& d = layers[l];
    a[l] = buffer<T>(B * d.out);
    dense_forward<T>(a[l].get(), nullptr, in, d.kernel, d.bias, B, d.in, d.out, d.act);
    in = a[l].get();
  }

  // Loss and its gradient with respect to the last output.
  const index_t C = layers[L - 1].out;
  const T* last = a[L - 1].get();
  auto g = buffer<T>(B * C);
  std::vector<double> loss_p(size_t(std::max<index_t>(B, 1)));
  double value;
  if (fused_softmax) {
    softmax_cross_entropy<T>(g.get(), loss_p.data(), y_true, ids, last, nullptr, B, C);
    activation_forward<T>(y_pred, last, B, C, Activation::softmax);
    value = ids ? loss_sparse<T>(nullptr, loss_p.data(), ids, y_pred, nullptr, B, C, false)
                : loss_dense<T>(nullptr, loss_p.data(), y_true, y_pred, nullptr, B, C,
                                Loss::categorical_crossentropy, false);
  } else {
    value = ids ? loss_sparse<T>(g.get(), loss_p.data(), ids, last, nullptr, B, C, from_logits)
                : loss_dense<T>(g.get(), loss_p.data(), y_true, last, nullptr, B, C, loss,
                                from_logits);
    std::copy(last, last + B * C, y_pred);
  }

  // Backward, last layer first; the kernels are read here, so every update waits for it.
  std::vector<std::unique_ptr<T[]>> dkernel(L), dbias(L);
  std::unique_ptr<T[]> dy = std::move(g);
  for (size_t l = L; l-- > 0;) {
    const DenseChainLayer<T>& d = layers[l];
    dkernel[l] = buffer<T>(d.in * d.out);
    dbias[l] = buffer<T>(d.out);
    std::unique_ptr<T[]> dx = l > 0 ? buffer<T>(B * d.in) : nullptr;
    std::unique_ptr<T[]> dz = d.act == Activation::linear ? nullptr : buffer<T>(B * d.out);
    dense_backward<T>(dx.get(), dkernel[l].get(), dbias[l].get(), dz.get(), dy.get(),
                      l > 0 ? a[l - 1].get() : x, d.kernel, a[l].get(), nullptr, B, d.in,
                      d.out, d.act);
    dy = std::move(dx);
  }

  // Updates, in the model's weight order (kernel, bias, next layer ...).
  for (size_t l = 0; l < L; ++l) {
    const DenseChainLayer<T>& d = layers[l];
    update(d.kernel, d.slots[0], dkernel[l].get(), d.in * d.out, opt);
    if (d.bias) update(d.bias, d.slots[1], dbias[l].get(), d.out, opt);
  }
  return value;
}

template double dense_chain_train_step<float>(float*, const float*, index_t,
                                              const std::vector<DenseChainLayer<float>>&, Loss,
                                              bool, bool, const float*, const std::int64_t*,
                                              const DenseChainOptimizer&);
template double dense_chain_train_step<double>(double*, const double*, index_t,
                                               const std::vector<DenseChainLayer<double>>&, Loss,
                                               bool, bool, const double*, const std::int64_t*,
                                               const DenseChainOptimizer&);

}  // namespace nanonet
