#include "nanonet/gru.hpp"

#include <optional>
#include <string>
#include <vector>

#include "bindings/common.hpp"
#include "bindings/recurrent_args.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

// GRU bias: reset_after (2, G) = [input_bias; recurrent_bias], else (G,).
py::object opt_bias(const py::object& o, const py::array& x, const RnnDims& d, index_t G,
                    const char* fn) {
  if (d.cell == RnnCell::gru && d.reset_after) return opt_float(o, x, {2, G}, fn, "bias", "(2, G)");
  return opt_float(o, x, {G}, fn, "bias", "(G,)");
}

RnnDims make_dims(index_t B, index_t TT, index_t I, index_t H, bool gru, bool reset_after,
                  bool go_backwards, const std::string& activation,
                  const std::string& recurrent_activation, const char* fn) {
  return RnnDims{B, TT, I, H, gru ? RnnCell::gru : RnnCell::simple, gru && reset_after,
                 go_backwards, lstm_act_from_name(activation, fn, "activation"),
                 gru ? lstm_act_from_name(recurrent_activation, fn, "recurrent_activation")
                     : LstmAct::linear};
}

py::tuple forward_impl(const char* fn, bool gru, const py::array& x, const py::array& kernel,
                       const py::array& recurrent_kernel, const py::object& bias_o,
                       const py::object& h0_o, const py::object& mask_o, const py::object& idm_o,
                       const py::object& rdm_o, bool go_backwards, bool reset_after,
                       const std::string& activation, const std::string& recurrent_activation,
                       bool return_sequences, bool training) {
  float_dtype(x, fn, "x");
  check_ndim(x, 3, fn, "x");
  check_contiguous(x, fn, "x");
  const index_t B = x.shape(0), TT = x.shape(1), I = x.shape(2);
  check_ndim(recurrent_kernel, 2, fn, "recurrent_kernel");
  const index_t H = recurrent_kernel.shape(0);
  if (H < 1) fail(fn, "recurrent_kernel must have at least one row (H >= 1)");
  const RnnDims d = make_dims(B, TT, I, H, gru, reset_after, go_backwards, activation,
                              recurrent_activation, fn);
  const index_t G = rnn_gate_width(d);
  const char* g_letters = gru ? "(I, 3H)" : "(I, H)";
  req_float(kernel, x, {I, G}, fn, "kernel", g_letters);
  req_float(recurrent_kernel, x, {H, G}, fn, "recurrent_kernel", gru ? "(H, 3H)" : "(H, H)");
  py::object bias = opt_bias(bias_o, x, d, G, fn);
  py::object h0 = opt_float(h0_o, x, {B, H}, fn, "h0", "(B, H)");
  py::object mask = opt_mask(mask_o, B, TT, fn);
  py::object idm = opt_float(idm_o, x, {B, I}, fn, "input_dropout_mask", "(B, I)");
  py::object rdm = opt_float(rdm_o, x, {B, H}, fn, "recurrent_dropout_mask", "(B, H)");

  auto dt = x.dtype();
  using Shape = std::vector<py::ssize_t>;
  std::optional<py::array> y, xh, hs, gates, aux;
  if (return_sequences) y.emplace(dt, Shape{B, TT, H});
  py::array h_n(dt, Shape{B, H});
  if (training) {
    xh.emplace(dt, Shape{TT, B, I + H});
    hs.emplace(dt, Shape{TT + 1, B, H});
    gates.emplace(dt, Shape{TT, B, G});
    if (gru) aux.emplace(dt, Shape{TT, B, H});
  }
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T* pb = cptr_or_null<T>(bias);
    const bool two = d.cell == RnnCell::gru && d.reset_after;
    RnnInputs<T> in{cptr<T>(x),       cptr<T>(kernel),       cptr<T>(recurrent_kernel),
                    pb,               two && pb ? pb + G : nullptr,
                    cptr_or_null<T>(h0), mask_ptr(mask),     cptr_or_null<T>(idm),
                    cptr_or_null<T>(rdm)};
    RnnCache<T> cache{};
    if (training)
      cache = RnnCache<T>{mptr<T>(*xh), mptr<T>(*hs), mptr<T>(*gates),
                          gru ? mptr<T>(*aux) : nullptr};
    T* py_ = y ? mptr<T>(*y) : nullptr;
    T* ph = mptr<T>(h_n);
    py::gil_scoped_release release;
    rnn_forward<T>(py_, ph, training ? &cache : nullptr, in, d);
  };
  dispatch_float(x, run);
  py::object cache_o = py::none();
  if (training)
    cache_o = gru ? py::tuple(py::make_tuple(*xh, *hs, *gates, *aux))
                  : py::tuple(py::make_tuple(*xh, *hs, *gates));
  return py::make_tuple(y ? py::object(*y) : py::none(), h_n, cache_o);
}

py::tuple backward_impl(const char* fn, bool gru, const py::object& dy_o, const py::object& dhn_o,
                        const py::tuple& cache_t, const py::array& kernel,
                        const py::array& recurrent_kernel, bool has_bias,
                        const py::object& mask_o, const py::object& idm_o,
                        const py::object& rdm_o, bool go_backwards, bool reset_after,
                        const std::string& activation, const std::string& recurrent_activation,
                        bool need_dx, bool keep_dz = false) {
  const size_t n_cache = gru ? 4 : 3;
  if (cache_t.size() != n_cache)
    fail(fn, std::string("cache must be the ") + std::to_string(n_cache) +
                 "-tuple the forward returned");
  py::array xh = cache_t[0].cast<py::array>();
  float_dtype(xh, fn, "cache");
  check_ndim(xh, 3, fn, "cache xh");
  check_ndim(kernel, 2, fn, "kernel");
  check_ndim(recurrent_kernel, 2, fn, "recurrent_kernel");
  const index_t TT = xh.shape(0), B = xh.shape(1), I = kernel.shape(0);
  const index_t H = recurrent_kernel.shape(0);
  if (H < 1) fail(fn, "recurrent_kernel must have at least one row (H >= 1)");
  const RnnDims d = make_dims(B, TT, I, H, gru, reset_after, go_backwards, activation,
                              recurrent_activation, fn);
  const index_t G = rnn_gate_width(d);
  req_float(xh, xh, {TT, B, I + H}, fn, "cache xh", "(T, B, I + H)");
  py::array hs = req_float(cache_t[1].cast<py::array>(), xh, {TT + 1, B, H}, fn, "cache h",
                           "(T + 1, B, H)");
  py::array gates =
      req_float(cache_t[2].cast<py::array>(), xh, {TT, B, G}, fn, "cache gates", "(T, B, G)");
  std::optional<py::array> aux;
  if (gru)
    aux.emplace(req_float(cache_t[3].cast<py::array>(), xh, {TT, B, H}, fn, "cache aux",
                          "(T, B, H)"));
  req_float(kernel, xh, {I, G}, fn, "kernel", gru ? "(I, 3H)" : "(I, H)");
  req_float(recurrent_kernel, xh, {H, G}, fn, "recurrent_kernel", gru ? "(H, 3H)" : "(H, H)");
  py::object dy = opt_float(dy_o, xh, {B, TT, H}, fn, "dy", "(B, T, H)");
  py::object dhn = opt_float(dhn_o, xh, {B, H}, fn, "dh_n", "(B, H)");
  py::object mask = opt_mask(mask_o, B, TT, fn);
  py::object idm = opt_float(idm_o, xh, {B, I}, fn, "input_dropout_mask", "(B, I)");
  py::object rdm = opt_float(rdm_o, xh, {B, H}, fn, "recurrent_dropout_mask", "(B, H)");

  auto dt = xh.dtype();
  using Shape = std::vector<py::ssize_t>;
  const bool two = d.cell == RnnCell::gru && d.reset_after;
  std::optional<py::array> dx, dbias;
  if (need_dx) dx.emplace(dt, Shape{B, TT, I});
  if (has_bias) dbias.emplace(dt, two ? Shape{2, G} : Shape{G});
  py::array dh0(dt, Shape{B, H});
  if (keep_dz) {
    py::array dgx(dt, Shape{TT, B, G});
    std::optional<py::array> dgr;
    if (two) dgr.emplace(dt, Shape{TT, B, G});
    auto run_dz = [&](auto zero) {
      using T = decltype(zero);
      RnnInputs<T> in{nullptr, cptr<T>(kernel), cptr<T>(recurrent_kernel), nullptr, nullptr,
                      nullptr, mask_ptr(mask),  cptr_or_null<T>(idm),      cptr_or_null<T>(rdm)};
      RnnCache<T> cache{const_cast<T*>(cptr<T>(xh)), const_cast<T*>(cptr<T>(hs)),
                        const_cast<T*>(cptr<T>(gates)),
                        gru ? const_cast<T*>(cptr<T>(*aux)) : nullptr};
      T* p_dx = dx ? mptr<T>(*dx) : nullptr;
      T* p_dgx = mptr<T>(dgx);
      T* p_dgr = dgr ? mptr<T>(*dgr) : nullptr;
      T* p_dh0 = mptr<T>(dh0);
      const T* p_dy = cptr_or_null<T>(dy);
      const T* p_dhn = cptr_or_null<T>(dhn);
      py::gil_scoped_release release;
      rnn_backward_dz<T>(p_dx, p_dgx, p_dgr, p_dh0, p_dy, p_dhn, cache, in, d);
    };
    dispatch_float(xh, run_dz);
    return py::make_tuple(dx ? py::object(*dx) : py::none(), dgx,
                          dgr ? py::object(*dgr) : py::none(), dh0);
  }
  py::array dkernel(dt, Shape{I, G}), drk(dt, Shape{H, G});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    RnnInputs<T> in{nullptr, cptr<T>(kernel), cptr<T>(recurrent_kernel), nullptr, nullptr,
                    nullptr, mask_ptr(mask),  cptr_or_null<T>(idm),      cptr_or_null<T>(rdm)};
    // The kernel only reads the cache; RnnCache holds non-const pointers for the forward.
    RnnCache<T> cache{const_cast<T*>(cptr<T>(xh)), const_cast<T*>(cptr<T>(hs)),
                      const_cast<T*>(cptr<T>(gates)),
                      gru ? const_cast<T*>(cptr<T>(*aux)) : nullptr};
    T* p_dx = dx ? mptr<T>(*dx) : nullptr;
    T* p_db = dbias ? mptr<T>(*dbias) : nullptr;
    T* p_dk = mptr<T>(dkernel);
    T* p_drk = mptr<T>(drk);
    T* p_dh0 = mptr<T>(dh0);
    const T* p_dy = cptr_or_null<T>(dy);
    const T* p_dhn = cptr_or_null<T>(dhn);
    py::gil_scoped_release release;
    rnn_backward<T>(p_dx, p_dk, p_drk, p_db, two && p_db ? p_db + G : nullptr, p_dh0, p_dy,
                    p_dhn, cache, in, d);
  };
  dispatch_float(xh, run);
  return py::make_tuple(dx ? py::object(*dx) : py::none(), dkernel, drk,
                        dbias ? py::object(*dbias) : py::none(), dh0);
}

}  // namespace

void register_gru(py::module_& m) {
  m.def(
      "gru_forward",
      [](const py::array& x, const py::array& kernel, const py::array& recurrent_kernel,
         const py::object& bias, const py::object& h0, const py::object& mask,
         const py::object& input_dropout_mask, const py::object& recurrent_dropout_mask,
         bool go_backwards, bool reset_after, const std::string& activation,
         const std::string& recurrent_activation, bool return_sequences, bool training) {
        return forward_impl("gru_forward", true, x, kernel, recurrent_kernel, bias, h0, mask,
                            input_dropout_mask, recurrent_dropout_mask, go_backwards, reset_after,
                            activation, recurrent_activation, return_sequences, training);
      },
      py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"),
      py::arg("h0"), py::arg("mask"), py::arg("input_dropout_mask"),
      py::arg("recurrent_dropout_mask"), py::arg("go_backwards"), py::arg("reset_after"),
      py::arg("activation"), py::arg("recurrent_activation"), py::arg("return_sequences"),
      py::arg("training"),
      "Whole-sequence GRU forward (see cpp/nanonet/gru.hpp). x (B, T, I), kernel (I, 3H), "
      "recurrent_kernel (H, 3H), optional bias (2, 3H) with reset_after else (3H,), h0 (B, H), "
      "mask (B, T) bool/uint8, dropout masks (B, I) / (B, H). Returns (y (B, T, H) or None, h_n, "
      "cache or None); cache = (xh, h, gates, aux), kept only when training.");
  m.def(
      "gru_backward",
      [](const py::object& dy, const py::object& dh_n, const py::tuple& cache,
         const py::array& kernel, const py::array& recurrent_kernel, bool has_bias,
         const py::object& mask, const py::object& input_dropout_mask,
         const py::object& recurrent_dropout_mask, bool go_backwards, bool reset_after,
         const std::string& activation, const std::string& recurrent_activation, bool need_dx) {
        return backward_impl("gru_backward", true, dy, dh_n, cache, kernel, recurrent_kernel,
                             has_bias, mask, input_dropout_mask, recurrent_dropout_mask,
                             go_backwards, reset_after, activation, recurrent_activation, need_dx);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("cache"), py::arg("kernel"),
      py::arg("recurrent_kernel"), py::arg("has_bias"), py::arg("mask"),
      py::arg("input_dropout_mask"), py::arg("recurrent_dropout_mask"), py::arg("go_backwards"),
      py::arg("reset_after"), py::arg("activation"), py::arg("recurrent_activation"),
      py::arg("need_dx") = true,
      "Whole-sequence GRU backward through time. dy (B, T, H) / dh_n (B, H) each optional. "
      "Returns (dx or None when not need_dx, dkernel, drecurrent_kernel, dbias or None, dh0), all "
      "new.");
  m.def(
      "gru_backward_dz",
      [](const py::object& dy, const py::object& dh_n, const py::tuple& cache,
         const py::array& kernel, const py::array& recurrent_kernel,
         const py::object& mask, const py::object& input_dropout_mask,
         const py::object& recurrent_dropout_mask, bool go_backwards, bool reset_after,
         const std::string& activation, const std::string& recurrent_activation, bool need_dx) {
        return backward_impl("gru_backward_dz", true, dy, dh_n, cache, kernel, recurrent_kernel,
                             false, mask, input_dropout_mask, recurrent_dropout_mask,
                             go_backwards, reset_after, activation, recurrent_activation, need_dx,
                             true);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("cache"), py::arg("kernel"),
      py::arg("recurrent_kernel"), py::arg("mask"), py::arg("input_dropout_mask"),
      py::arg("recurrent_dropout_mask"), py::arg("go_backwards"), py::arg("reset_after"),
      py::arg("activation"), py::arg("recurrent_activation"), py::arg("need_dx") = true,
      "gru_backward without weight gradients (DP-SGD). Returns (dx or None, dgx (T, B, 3H), dgr "
      "(T, B, 3H) with reset_after else None, dh0): the gate gradients, time-major in "
      "processing order.");
  m.def(
      "simple_rnn_backward_dz",
      [](const py::object& dy, const py::object& dh_n, const py::tuple& cache,
         const py::array& kernel, const py::array& recurrent_kernel, const py::object& mask,
         const py::object& input_dropout_mask, const py::object& recurrent_dropout_mask,
         bool go_backwards, const std::string& activation, bool need_dx) {
        return backward_impl("simple_rnn_backward_dz", false, dy, dh_n, cache, kernel,
                             recurrent_kernel, false, mask, input_dropout_mask,
                             recurrent_dropout_mask, go_backwards, false, activation, "linear",
                             need_dx, true);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("cache"), py::arg("kernel"),
      py::arg("recurrent_kernel"), py::arg("mask"), py::arg("input_dropout_mask"),
      py::arg("recurrent_dropout_mask"), py::arg("go_backwards"), py::arg("activation"),
      py::arg("need_dx") = true,
      "simple_rnn_backward without weight gradients (DP-SGD). Returns (dx or None, dpre "
      "(T, B, H), None, dh0).");
  m.def(
      "simple_rnn_forward",
      [](const py::array& x, const py::array& kernel, const py::array& recurrent_kernel,
         const py::object& bias, const py::object& h0, const py::object& mask,
         const py::object& input_dropout_mask, const py::object& recurrent_dropout_mask,
         bool go_backwards, const std::string& activation, bool return_sequences, bool training) {
        return forward_impl("simple_rnn_forward", false, x, kernel, recurrent_kernel, bias, h0,
                            mask, input_dropout_mask, recurrent_dropout_mask, go_backwards, false,
                            activation, "linear", return_sequences, training);
      },
      py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"),
      py::arg("h0"), py::arg("mask"), py::arg("input_dropout_mask"),
      py::arg("recurrent_dropout_mask"), py::arg("go_backwards"), py::arg("activation"),
      py::arg("return_sequences"), py::arg("training"),
      "Whole-sequence SimpleRNN forward (see cpp/nanonet/gru.hpp). x (B, T, I), kernel (I, H), "
      "recurrent_kernel (H, H), optional bias (H,), h0 (B, H), mask (B, T), dropout masks. "
      "Returns (y or None, h_n, cache or None); cache = (xh, h, gates).");
  m.def(
      "simple_rnn_backward",
      [](const py::object& dy, const py::object& dh_n, const py::tuple& cache,
         const py::array& kernel, const py::array& recurrent_kernel, bool has_bias,
         const py::object& mask, const py::object& input_dropout_mask,
         const py::object& recurrent_dropout_mask, bool go_backwards,
         const std::string& activation, bool need_dx) {
        return backward_impl("simple_rnn_backward", false, dy, dh_n, cache, kernel,
                             recurrent_kernel, has_bias, mask, input_dropout_mask,
                             recurrent_dropout_mask, go_backwards, false, activation, "linear",
                             need_dx);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("cache"), py::arg("kernel"),
      py::arg("recurrent_kernel"), py::arg("has_bias"), py::arg("mask"),
      py::arg("input_dropout_mask"), py::arg("recurrent_dropout_mask"), py::arg("go_backwards"),
      py::arg("activation"), py::arg("need_dx") = true,
      "Whole-sequence SimpleRNN backward through time. Returns (dx or None, dkernel, "
      "drecurrent_kernel, dbias or None, dh0), all new.");
}

}  // namespace nanonet
