#include "nanonet/losses.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "nanonet/activations.hpp"
#include "nanonet/vecmath.hpp"

namespace nanonet {

// ---------------------------------------------------------------------------------------------
// names

Loss loss_from_name(const std::string& name, const char* fn) {
  if (name == "mse") return Loss::mse;
  if (name == "mae") return Loss::mae;
  if (name == "binary_crossentropy") return Loss::binary_crossentropy;
  if (name == "categorical_crossentropy") return Loss::categorical_crossentropy;
  if (name == "sparse_categorical_crossentropy") return Loss::sparse_categorical_crossentropy;
  throw std::invalid_argument(std::string(fn) + ": loss must be one of " + loss_valid_names() +
                              "; got '" + name + "'");
}

const char* loss_name(Loss loss) {
  switch (loss) {
    case Loss::mae: return "mae";
    case Loss::binary_crossentropy: return "binary_crossentropy";
    case Loss::categorical_crossentropy: return "categorical_crossentropy";
    case Loss::sparse_categorical_crossentropy: return "sparse_categorical_crossentropy";
    default: return "mse";
  }
}

const char* loss_valid_names() {
  return "mse, mae, binary_crossentropy, categorical_crossentropy, "
         "sparse_categorical_crossentropy";
}

namespace {

// Keras's clip to [eps, 1 - eps], bounds rounded to the dtype; a NaN stays NaN.
template <typename T>
struct Clip {
  T lo = T(kLossEpsilon);
  T hi = T(1) - T(kLossEpsilon);
  T operator()(T q) const { return std::min(std::max(q, lo), hi); }
  // the clip passes the gradient on [lo, hi] (inclusive, as tf.clip_by_value); NaN passes too
  bool passes(T q) const { return !(q < lo) && !(q > hi); }
};

void check_class_ids(const std::int64_t* ids, index_t P, index_t C) {
  for (index_t p = 0; p < P; ++p)
    if (ids[p] < 0 || ids[p] >= C)
      throw std::invalid_argument(
          "sparse_categorical_crossentropy: y_true holds class id " + std::to_string(ids[p]) +
          " at (flat) position " + std::to_string(p) + "; ids must be in [0, C) = [0, " +
          std::to_string(C) + ")");
}

// ---- one row each: return the row's loss, write s * d l / d y_pred into g when non-null ------

template <typename T>
double mse_row(T* g, const T* yt, const T* yp, index_t C, double s) {
  double acc = 0.0;
  const double gs = 2.0 * s / double(C);
  for (index_t c = 0; c < C; ++c) {
    const T d = yp[c] - yt[c];
    acc += double(d) * double(d);
    if (g) g[c] = T(gs * double(d));
  }
  return acc / double(C);
}

template <typename T>
double mae_row(T* g, const T* yt, const T* yp, index_t C, double s) {
  double acc = 0.0;
  const T gs = T(s / double(C));
  for (index_t c = 0; c < C; ++c) {
    const T d = yp[c] - yt[c];
    acc += std::fabs(double(d));
    // l = |d|: sign(d), 0 at 0, NaN stays NaN
    if (g) g[c] = d > T(0) ? gs : (d < T(0) ? T(-gs) : d * T(0));
  }
  return acc / double(C);
}

template <typename T>
double bce_row(T* g, const T* yt, const T* yp, index_t C, double s, bool from_logits) {
  double acc = 0.0;
  const double gs = s / double(C);
  if (from_logits) {
    for (index_t c = 0; c < C; ++c) {
      const double z = yp[c], y = yt[c];
      // -(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))), stable for any z
      acc += std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::fabs(z)));
      if (g) g[c] = T(gs * (double(vm::sigmoid(yp[c])) - y));
    }
  } else {
    const Clip<T> clip;
    for (index_t c = 0; c < C; ++c) {
      const T pc = clip(yp[c]);
      const double p = pc, y = yt[c], q = double(T(1) - pc);  // 1 - p rounded like Keras
      acc -= y * std::log(p) + (double(T(1) - yt[c])) * std::log(q);
      // d/dp -(y log p + (1 - y) log(1 - p)) = (p - y) / (p (1 - p))
      if (g) g[c] = clip.passes(yp[c]) ? T(gs * (p - y) / (p * q)) : T(0);
    }
  }
  return acc / double(C);
}

// Categorical from probabilities: q = p / sum(p), l = -sum_c y_c log clip(q_c).
// y == nullptr: sparse, the label is `target`.
template <typename T>
double cce_prob_row(T* g, const T* y, index_t target, const T* yp, index_t C, double s) {
  const Clip<T> clip;
  double sum_p = 0.0;
  for (index_t c = 0; c < C; ++c) sum_p += yp[c];
  const T sum_t = T(sum_p);
  auto label = [&](index_t c) { return y ? double(y[c]) : (c == target ? 1.0 : 0.0); };
  // G_c = d l / d q_c = -y_c / q_c where the clip passes
  auto G = [&](index_t c, T q) { return clip.passes(q) ? -label(c) / double(clip(q)) : 0.0; };
  double loss = 0.0, dot = 0.0;
  for (index_t c = 0; c < C; ++c) {
    if (!y && c != target) continue;  // sparse: only the target term of the loss
    const T q = yp[c] / sum_t;
    loss -= label(c) * std::log(double(clip(q)));
  }
  if (g) {
    for (index_t c = 0; c < C; ++c) {
      const T q = yp[c] / sum_t;
      dot += G(c, q) * double(q);
    }
    // q_c = p_c / S:  d l / d p_k = (G_k - sum_c G_c q_c) / S
    for (index_t c = 0; c < C; ++c) {
      const T q = yp[c] / sum_t;
      g[c] = T(s * (G(c, q) - dot) / double(sum_t));
    }
  }
  return loss;
}

// Categorical from logits (the fused softmax cross-entropy), rows [r0, r1).
// l = sum_c y_c (lse - z_c), lse = m + log(S), S = sum_c exp(z_c - m);
// g = s (softmax(z) sum_c y_c - y); y == nullptr: sparse with ids.
template <typename T>
inline void xent_logits_rows_body(T* grad, double* loss_p, const T* y_true,
                                  const std::int64_t* ids, const T* logits, const T* weight,
                                  index_t P, index_t C, index_t r0, index_t r1) {
  for (index_t p = r0; p < r1; ++p) {
    const T* z = logits + p * C;
    const T* y = y_true ? y_true + p * C : nullptr;
    T* g = grad ? grad + p * C : nullptr;
    const double s = (weight ? double(weight[p]) : 1.0) / double(P);
    T m = z[0];
    for (index_t c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
    double S = 0.0;
    if (g) {
      for (index_t c = 0; c < C; ++c) g[c] = vm::exp(z[c] - m);  // vectorises
      for (index_t c = 0; c < C; ++c) S += g[c];
    } else {
      for (index_t c = 0; c < C; ++c) S += vm::exp(z[c] - m);
    }
    const double log_s = std::log(S);
    double loss = 0.0, sum_y = 1.0;
    if (y) {
      sum_y = 0.0;
      for (index_t c = 0; c < C; ++c) {
        sum_y += y[c];
        loss += double(y[c]) * (log_s - double(z[c] - m));
      }
    } else {
      loss = log_s - double(z[ids[p]] - m);
    }
    loss_p[p] = loss;
    if (g) {
      const double k = s * sum_y / S;
      if (y) {
        for (index_t c = 0; c < C; ++c) g[c] = T(k * double(g[c]) - s * double(y[c]));
      } else {
        const index_t t = ids[p];
        const double e_t = g[t];
        for (index_t c = 0; c < C; ++c) g[c] = T(k * double(g[c]));
        g[t] = T(k * e_t - s);  // - s * onehot
      }
    }
  }
}

NN_ISA_CLONES(void, xent_logits_rows, (float* grad, double* loss_p, const float* y_true,
               const std::int64_t* ids, const float* logits, const float* weight, index_t P,
               index_t C, index_t r0, index_t r1),
              (grad, loss_p, y_true, ids, logits, weight, P, C, r0, r1), xent_logits_rows_body)
NN_ISA_CLONES_F64(void, xent_logits_rows, (double* grad, double* loss_p, const double* y_true,
               const std::int64_t* ids, const double* logits, const double* weight, index_t P,
               index_t C, index_t r0, index_t r1),
              (grad, loss_p, y_true, ids, logits, weight, P, C, r0, r1), xent_logits_rows_body)

// value = sum_p w_p l_p / P in position order (0 when P == 0: Keras divides with no NaN).
template <typename T>
double weighted_mean(const double* loss_p, const T* weight, index_t P) {
  double acc = 0.0;
  for (index_t p = 0; p < P; ++p) acc += (weight ? double(weight[p]) : 1.0) * loss_p[p];
  return P > 0 ? acc / double(P) : 0.0;
}

// row(p, s) -> l_p for every position, rows split between threads.
template <typename T, typename Row>
void for_rows(double* loss_p, const T* weight, index_t P, index_t C, Row&& row) {
  parallel_chunks(P, P * C, kLossParallelElems, 1, [&](index_t r0, index_t r1) {
    for (index_t p = r0; p < r1; ++p)
      loss_p[p] = row(p, (weight ? double(weight[p]) : 1.0) / double(P));
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------

template <typename T>
double softmax_cross_entropy(T* dlogits, double* loss_p, const T* y_true,
                             const std::int64_t* ids, const T* logits, const T* weight,
                             index_t P, index_t C) {
  if (!y_true && !ids)
    throw std::invalid_argument("softmax_cross_entropy: needs y_true or class ids");
  if (ids) check_class_ids(ids, P, C);
  if (C <= 0) {  // no classes: every loss is 0 (sum over an empty axis)
    std::fill(loss_p, loss_p + P, 0.0);
    return 0.0;
  }
  parallel_chunks(P, P * C, kLossParallelElems, 1, [&](index_t r0, index_t r1) {
    xent_logits_rows(dlogits, loss_p, y_true, ids, logits, weight, P, C, r0, r1);
  });
  return weighted_mean(loss_p, weight, P);
}

template <typename T>
double loss_dense(T* grad, double* loss_p, const T* y_true, const T* y_pred, const T* weight,
                  index_t P, index_t C, Loss loss, bool from_logits) {
  switch (loss) {
    case Loss::sparse_categorical_crossentropy:
      throw std::invalid_argument("loss_dense: the sparse loss takes class ids (loss_sparse)");
    case Loss::categorical_crossentropy:
      if (from_logits)
        return softmax_cross_entropy(grad, loss_p, y_true, nullptr, y_pred, weight, P, C);
      for_rows(loss_p, weight, P, C, [&](index_t p, double s) {
        return cce_prob_row(grad ? grad + p * C : nullptr, y_true + p * C, 0, y_pred + p * C, C,
                            s);
      });
      break;
    default:
      if (C <= 0) {  // a mean over an empty axis is NaN, as in NumPy and Keras
        std::fill(loss_p, loss_p + P, std::nan(""));
        break;
      }
      for_rows(loss_p, weight, P, C, [&](index_t p, double s) {
        T* g = grad ? grad + p * C : nullptr;
        const T* yt = y_true + p * C;
        const T* yp = y_pred + p * C;
        if (loss == Loss::mse) return mse_row(g, yt, yp, C, s);
        if (loss == Loss::mae) return mae_row(g, yt, yp, C, s);
        return bce_row(g, yt, yp, C, s, from_logits);
      });
      break;
  }
  return weighted_mean(loss_p, weight, P);
}

template <typename T>
double loss_sparse(T* grad, double* loss_p, const std::int64_t* ids, const T* y_pred,
                   const T* weight, index_t P, index_t C, bool from_logits) {
  if (from_logits)
    return softmax_cross_entropy(grad, loss_p, static_cast<const T*>(nullptr), ids, y_pred,
                                 weight, P, C);
  check_class_ids(ids, P, C);
  for_rows(loss_p, weight, P, C, [&](index_t p, double s) {
    return cce_prob_row(grad ? grad + p * C : nullptr, static_cast<const T*>(nullptr), ids[p],
                        y_pred + p * C, C, s);
  });
  return weighted_mean(loss_p, weight, P);
}

#define NN_INSTANTIATE(T)                                                                       \
  template double loss_dense<T>(T*, double*, const T*, const T*, const T*, index_t, index_t,    \
                                Loss, bool);                                                    \
  template double loss_sparse<T>(T*, double*, const std::int64_t*, const T*, const T*, index_t, \
                                 index_t, bool);                                                \
  template double softmax_cross_entropy<T>(T*, double*, const T*, const std::int64_t*,          \
                                           const T*, const T*, index_t, index_t);
NN_INSTANTIATE(float)
NN_INSTANTIATE(double)
#undef NN_INSTANTIATE

}  // namespace nanonet
