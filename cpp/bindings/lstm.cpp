#include "nanonet/lstm.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/common.hpp"
#include "bindings/recurrent_args.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

py::tuple forward_impl(const char* fn, bool use_ref, const py::array& x, const py::array& kernel,
                       const py::array& recurrent_kernel, const py::object& bias_o,
                       const py::object& h0_o, const py::object& c0_o, const py::object& mask_o,
                       const py::object& idm_o, const py::object& rdm_o, bool go_backwards,
                       const std::string& activation, const std::string& recurrent_activation,
                       bool return_sequences, bool training) {
  float_dtype(x, fn, "x");
  check_ndim(x, 3, fn, "x");
  check_contiguous(x, fn, "x");
  const index_t B = x.shape(0), TT = x.shape(1), I = x.shape(2);
  check_ndim(recurrent_kernel, 2, fn, "recurrent_kernel");
  const index_t H = recurrent_kernel.shape(0), G = 4 * H;
  req_float(kernel, x, {I, G}, fn, "kernel", "(I, 4H)");
  req_float(recurrent_kernel, x, {H, G}, fn, "recurrent_kernel", "(H, 4H)");
  py::object bias = opt_float(bias_o, x, {G}, fn, "bias", "(4H,)");
  py::object h0 = opt_float(h0_o, x, {B, H}, fn, "h0", "(B, H)");
  py::object c0 = opt_float(c0_o, x, {B, H}, fn, "c0", "(B, H)");
  py::object mask = opt_mask(mask_o, B, TT, fn);
  py::object idm = opt_float(idm_o, x, {B, I}, fn, "input_dropout_mask", "(B, I)");
  py::object rdm = opt_float(rdm_o, x, {B, H}, fn, "recurrent_dropout_mask", "(B, H)");
  LstmDims d{B, TT, I, H, go_backwards,
             lstm_act_from_name(activation, fn, "activation"),
             lstm_act_from_name(recurrent_activation, fn, "recurrent_activation")};

  auto dt = x.dtype();
  using Shape = std::vector<py::ssize_t>;
  // Only what is asked for is allocated (batch-1 inference: h_n and c_n alone).
  std::optional<py::array> y, xh, gates, cs, acs;
  if (return_sequences) y.emplace(dt, Shape{B, TT, H});
  py::array h_n(dt, Shape{B, H}), c_n(dt, Shape{B, H});
  if (training) {
    xh.emplace(dt, Shape{TT, B, I + H});
    gates.emplace(dt, Shape{TT, B, G});
    cs.emplace(dt, Shape{TT + 1, B, H});
    acs.emplace(dt, Shape{TT, B, H});
  }
  auto run = [&](auto zero) {
    using T = decltype(zero);
    LstmInputs<T> in{cptr<T>(x),
                     cptr<T>(kernel),
                     cptr<T>(recurrent_kernel),
                     cptr_or_null<T>(bias),
                     cptr_or_null<T>(h0),
                     cptr_or_null<T>(c0),
                     mask_ptr(mask),
                     cptr_or_null<T>(idm),
                     cptr_or_null<T>(rdm)};
    LstmCache<T> cache{};
    if (training)
      cache = LstmCache<T>{mptr<T>(*xh), mptr<T>(*gates), mptr<T>(*cs), mptr<T>(*acs)};
    T* py_ = y ? mptr<T>(*y) : nullptr;
    T* ph = mptr<T>(h_n);
    T* pc = mptr<T>(c_n);
    py::gil_scoped_release release;
    if (use_ref)
      lstm_forward_ref<T>(py_, ph, pc, training ? &cache : nullptr, in, d);
    else
      lstm_forward<T>(py_, ph, pc, training ? &cache : nullptr, in, d);
  };
  dispatch_float(x, run);
  py::object cache_o = py::none();
  if (training)
    cache_o = py::make_tuple(*xh, *gates, *cs, *acs);
  return py::make_tuple(y ? py::object(*y) : py::none(), h_n, c_n, cache_o);
}

py::tuple backward_impl(const char* fn, bool use_ref, const py::object& dy_o,
                        const py::object& dhn_o, const py::object& dcn_o, const py::tuple& cache_t,
                        const py::array& kernel, const py::array& recurrent_kernel, bool has_bias,
                        const py::object& mask_o, const py::object& idm_o, const py::object& rdm_o,
                        bool go_backwards, const std::string& activation,
                        const std::string& recurrent_activation, bool need_dx,
                        bool keep_dz = false) {
  if (cache_t.size() != 4) fail(fn, "cache must be the 4-tuple lstm_forward returned");
  py::array xd = cache_t[0].cast<py::array>();  // xh: [xd | hd], named xd for the dtype checks
  float_dtype(xd, fn, "cache");
  check_ndim(xd, 3, fn, "cache xh");
  check_ndim(kernel, 2, fn, "kernel");
  check_ndim(recurrent_kernel, 2, fn, "recurrent_kernel");
  const index_t TT = xd.shape(0), B = xd.shape(1), I = kernel.shape(0);
  const index_t H = recurrent_kernel.shape(0), G = 4 * H;
  req_float(xd, xd, {TT, B, I + H}, fn, "cache xh", "(T, B, I + H)");
  py::array gates = req_float(cache_t[1].cast<py::array>(), xd, {TT, B, G}, fn, "cache gates",
                              "(T, B, 4H)");
  py::array cs = req_float(cache_t[2].cast<py::array>(), xd, {TT + 1, B, H}, fn, "cache c",
                           "(T + 1, B, H)");
  py::array acs =
      req_float(cache_t[3].cast<py::array>(), xd, {TT, B, H}, fn, "cache ac", "(T, B, H)");
  req_float(kernel, xd, {I, G}, fn, "kernel", "(I, 4H)");
  req_float(recurrent_kernel, xd, {H, G}, fn, "recurrent_kernel", "(H, 4H)");
  py::object dy = opt_float(dy_o, xd, {B, TT, H}, fn, "dy", "(B, T, H)");
  py::object dhn = opt_float(dhn_o, xd, {B, H}, fn, "dh_n", "(B, H)");
  py::object dcn = opt_float(dcn_o, xd, {B, H}, fn, "dc_n", "(B, H)");
  py::object mask = opt_mask(mask_o, B, TT, fn);
  py::object idm = opt_float(idm_o, xd, {B, I}, fn, "input_dropout_mask", "(B, I)");
  py::object rdm = opt_float(rdm_o, xd, {B, H}, fn, "recurrent_dropout_mask", "(B, H)");
  LstmDims d{B, TT, I, H, go_backwards,
             lstm_act_from_name(activation, fn, "activation"),
             lstm_act_from_name(recurrent_activation, fn, "recurrent_activation")};

  auto dt = xd.dtype();
  using Shape = std::vector<py::ssize_t>;
  std::optional<py::array> dx, dbias;
  if (need_dx) dx.emplace(dt, Shape{B, TT, I});
  if (has_bias) dbias.emplace(dt, Shape{G});
  // dkernel and drecurrent_kernel: two row blocks of one (I + H, G) array, so the kernel
  // computes both with one GEMM.
  py::array dw(dt, Shape{I + H, G});
  py::array dkernel = dw[py::slice(0, I, 1)].cast<py::array>();
  py::array drk = dw[py::slice(I, I + H, 1)].cast<py::array>();
  py::array dh0(dt, Shape{B, H}), dc0(dt, Shape{B, H});
  std::optional<py::array> dz;
  if (keep_dz) dz.emplace(dt, Shape{TT, B, G});
  auto run = [&](auto zero) {
    using T = decltype(zero);
    LstmInputs<T> in{nullptr,
                     cptr<T>(kernel),
                     cptr<T>(recurrent_kernel),
                     nullptr,
                     nullptr,
                     nullptr,
                     mask_ptr(mask),
                     cptr_or_null<T>(idm),
                     cptr_or_null<T>(rdm)};
    // The kernels only read the cache; LstmCache holds non-const pointers for the forward.
    LstmCache<T> cache{const_cast<T*>(cptr<T>(xd)), const_cast<T*>(cptr<T>(gates)),
                       const_cast<T*>(cptr<T>(cs)), const_cast<T*>(cptr<T>(acs))};
    T* p_dx = dx ? mptr<T>(*dx) : nullptr;
    T* p_dk = mptr<T>(dkernel);
    T* p_drk = mptr<T>(drk);
    T* p_db = dbias ? mptr<T>(*dbias) : nullptr;
    T* p_dh0 = mptr<T>(dh0);
    T* p_dc0 = mptr<T>(dc0);
    const T* p_dy = cptr_or_null<T>(dy);
    const T* p_dhn = cptr_or_null<T>(dhn);
    const T* p_dcn = cptr_or_null<T>(dcn);
    py::gil_scoped_release release;
    if (dz)
      lstm_backward_dz<T>(p_dx, mptr<T>(*dz), p_dh0, p_dc0, p_dy, p_dhn, p_dcn, cache, in, d);
    else if (use_ref)
      lstm_backward_ref<T>(p_dx, p_dk, p_drk, p_db, p_dh0, p_dc0, p_dy, p_dhn, p_dcn, cache, in,
                           d);
    else
      lstm_backward<T>(p_dx, p_dk, p_drk, p_db, p_dh0, p_dc0, p_dy, p_dhn, p_dcn, cache, in, d);
  };
  dispatch_float(xd, run);
  if (dz) return py::make_tuple(dx ? py::object(*dx) : py::none(), *dz, dh0, dc0);
  return py::make_tuple(dx ? py::object(*dx) : py::none(), dkernel, drk,
                        dbias ? py::object(*dbias) : py::none(), dh0, dc0);
}

}  // namespace

void register_lstm(py::module_& m) {
  m.def(
      "lstm_forward",
      [](const py::array& x, const py::array& kernel, const py::array& recurrent_kernel,
         const py::object& bias, const py::object& h0, const py::object& c0,
         const py::object& mask, const py::object& input_dropout_mask,
         const py::object& recurrent_dropout_mask, bool go_backwards,
         const std::string& activation, const std::string& recurrent_activation,
         bool return_sequences, bool training, bool use_ref) {
        return forward_impl(use_ref ? "lstm_forward_ref" : "lstm_forward", use_ref, x, kernel,
                            recurrent_kernel, bias, h0, c0, mask, input_dropout_mask,
                            recurrent_dropout_mask, go_backwards, activation,
                            recurrent_activation, return_sequences, training);
      },
      py::arg("x"), py::arg("kernel"), py::arg("recurrent_kernel"), py::arg("bias"),
      py::arg("h0"), py::arg("c0"), py::arg("mask"), py::arg("input_dropout_mask"),
      py::arg("recurrent_dropout_mask"), py::arg("go_backwards"), py::arg("activation"),
      py::arg("recurrent_activation"), py::arg("return_sequences"), py::arg("training"),
      py::arg("use_ref") = false,
      "Whole-sequence LSTM forward (see cpp/nanonet/lstm.hpp). x (B, T, I), kernel (I, 4H), "
      "recurrent_kernel (H, 4H), optional bias (4H,), h0/c0 (B, H), mask (B, T) bool/uint8, "
      "dropout masks (B, I) / (B, H). Returns (y (B, T, H) or None, h_n, c_n, cache or None); "
      "cache = (xh, gates, c, ac), kept only when training.");
  m.def(
      "lstm_backward",
      [](const py::object& dy, const py::object& dh_n, const py::object& dc_n,
         const py::tuple& cache, const py::array& kernel, const py::array& recurrent_kernel,
         bool has_bias, const py::object& mask, const py::object& input_dropout_mask,
         const py::object& recurrent_dropout_mask, bool go_backwards,
         const std::string& activation, const std::string& recurrent_activation, bool need_dx,
         bool use_ref) {
        return backward_impl(use_ref ? "lstm_backward_ref" : "lstm_backward", use_ref, dy, dh_n,
                             dc_n, cache, kernel, recurrent_kernel, has_bias, mask,
                             input_dropout_mask, recurrent_dropout_mask, go_backwards, activation,
                             recurrent_activation, need_dx);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("cache"), py::arg("kernel"),
      py::arg("recurrent_kernel"), py::arg("has_bias"), py::arg("mask"),
      py::arg("input_dropout_mask"), py::arg("recurrent_dropout_mask"), py::arg("go_backwards"),
      py::arg("activation"), py::arg("recurrent_activation"), py::arg("need_dx") = true,
      py::arg("use_ref") = false,
      "Whole-sequence LSTM backward through time. dy (B, T, H) / dh_n / dc_n (B, H) each "
      "optional. Returns (dx or None when not need_dx, dkernel, drecurrent_kernel, dbias or None, "
      "dh0, dc0), all new.");
  m.def(
      "lstm_backward_dz",
      [](const py::object& dy, const py::object& dh_n, const py::object& dc_n,
         const py::tuple& cache, const py::array& kernel, const py::array& recurrent_kernel,
         const py::object& mask, const py::object& input_dropout_mask,
         const py::object& recurrent_dropout_mask, bool go_backwards,
         const std::string& activation, const std::string& recurrent_activation, bool need_dx) {
        return backward_impl("lstm_backward_dz", false, dy, dh_n, dc_n, cache, kernel,
                             recurrent_kernel, false, mask, input_dropout_mask,
                             recurrent_dropout_mask, go_backwards, activation,
                             recurrent_activation, need_dx, true);
      },
      py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("cache"), py::arg("kernel"),
      py::arg("recurrent_kernel"), py::arg("mask"), py::arg("input_dropout_mask"),
      py::arg("recurrent_dropout_mask"), py::arg("go_backwards"), py::arg("activation"),
      py::arg("recurrent_activation"), py::arg("need_dx") = true,
      "lstm_backward keeping the gate gradients for DP-SGD and forming no weight gradients. "
      "Returns (dx or None, dz (T, B, 4H) time-major in processing order, dh0, dc0), all new; "
      "the weight gradients are cache xh^T dz and the sum of dz over rows.");
}

}  // namespace nanonet
