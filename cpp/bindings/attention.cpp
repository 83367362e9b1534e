#include "nanonet/attention.hpp"

#include <string>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

// q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv): dtype, rank, contiguity, agreeing dims.
struct Dims {
  index_t B, H, Tq, Tk, D, Dv;
};

// The element strides (batch, head, step) of a 4-D input whose last axis is contiguous, as the
// fast kernels take them (views such as the heads of a (B, T, H * D) projection pass as they are).
AttnStrides strides_of(const py::array& a, const char* fn, const char* name) {
  const py::ssize_t item = a.itemsize();
  if (a.shape(3) > 1 && a.strides(3) != item)
    fail(fn, std::string(name) + "'s last axis must be contiguous (stride " +
                 std::to_string(item) + " bytes); got " + std::to_string(a.strides(3)));
  for (int ax = 0; ax < 3; ++ax)
    if (a.strides(ax) < 0 || a.strides(ax) % item != 0)
      fail(fn, std::string(name) + " must have non-negative strides that are multiples of its "
                                   "item size; got " + std::to_string(a.strides(ax)) +
                   " bytes on axis " + std::to_string(ax));
  return AttnStrides{index_t(a.strides(0) / item), index_t(a.strides(1) / item),
                     index_t(a.strides(2) / item)};
}

// Ref: the scalar twins read C-contiguous inputs; the fast kernels any strides_of view.
Dims check_qkv(const py::array& q, const py::array& k, const py::array& v, const char* fn,
               bool contiguous = true) {
  float_dtype(q, fn, "q");
  same_dtype(q, k, fn, "q", "k");
  same_dtype(q, v, fn, "q", "v");
  check_ndim(q, 4, fn, "q");
  check_ndim(k, 4, fn, "k");
  check_ndim(v, 4, fn, "v");
  const Dims d{q.shape(0), q.shape(1), q.shape(2), k.shape(2), q.shape(3), v.shape(3)};
  check_shape(k, {d.B, d.H, d.Tk, d.D}, fn, "k", "(B, H, Tk, D)");
  check_shape(v, {d.B, d.H, d.Tk, d.Dv}, fn, "v", "(B, H, Tk, Dv)");
  if (contiguous) {
    check_contiguous(q, fn, "q");
    check_contiguous(k, fn, "k");
    check_contiguous(v, fn, "v");
  }
  return d;
}

// An optional bool mask (B, Tk) or (B, Tq, Tk) -> (pointer, rows MQ); None -> (nullptr, 1).
const bool* opt_mask(const py::object& o, const Dims& d, index_t* rows, const char* fn) {
  *rows = 1;
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": mask must be a numpy.ndarray or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().is(py::dtype::of<bool>()))
    throw py::type_error(std::string(fn) + ": mask must be bool; got " +
                         std::string(py::str(a.dtype())));
  if (a.ndim() == 3) {
    check_shape(a, {d.B, d.Tq, d.Tk}, fn, "mask", "(B, Tq, Tk)");
    *rows = d.Tq;
  } else {
    check_shape(a, {d.B, d.Tk}, fn, "mask", "(B, Tk)");
  }
  check_contiguous(a, fn, "mask");
  return static_cast<const bool*>(a.data());
}

template <bool Ref>
py::tuple forward_impl(const char* fn, const py::array& q, const py::array& k,
                       const py::array& v, const py::object& mask, bool causal, double scale) {
  const Dims d = check_qkv(q, k, v, fn, Ref);
  const AttnStrides st[3] = {strides_of(q, fn, "q"), strides_of(k, fn, "k"),
                             strides_of(v, fn, "v")};
  index_t rows = 1;
  const bool* pm = opt_mask(mask, d, &rows, fn);
  py::array out(q.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.Tq, d.Dv});
  py::array lse(q.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.Tq});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* pq = cptr<S>(q);
    const S* pk = cptr<S>(k);
    const S* pv = cptr<S>(v);
    S* po = mptr<S>(out);
    S* pl = mptr<S>(lse);
    py::gil_scoped_release release;
    if (Ref)
      attention_forward_ref<S>(po, pl, pq, pk, pv, pm, rows, causal, S(scale), d.B, d.H, d.Tq,
                               d.Tk, d.D, d.Dv);
    else
      attention_forward<S>(po, pl, pq, pk, pv, pm, rows, causal, S(scale), d.B, d.H, d.Tq, d.Tk,
                           d.D, d.Dv, st);
  };
  dispatch_float(q, run);
  return py::make_tuple(out, lse);
}

template <bool Ref>
py::tuple backward_impl(const char* fn, const py::array& dout, const py::array& q,
                        const py::array& k, const py::array& v, const py::array& out,
                        const py::array& lse, const py::object& mask, bool causal,
                        double scale) {
  const Dims d = check_qkv(q, k, v, fn, Ref);
  same_dtype(q, dout, fn, "q", "dout");
  same_dtype(q, out, fn, "q", "out");
  same_dtype(q, lse, fn, "q", "lse");
  check_shape(dout, {d.B, d.H, d.Tq, d.Dv}, fn, "dout", "(B, H, Tq, Dv)");
  check_shape(out, {d.B, d.H, d.Tq, d.Dv}, fn, "out", "(B, H, Tq, Dv)");
  check_shape(lse, {d.B, d.H, d.Tq}, fn, "lse", "(B, H, Tq)");
  check_ndim(dout, 4, fn, "dout");
  if (Ref) check_contiguous(dout, fn, "dout");
  const AttnStrides st[4] = {strides_of(q, fn, "q"), strides_of(k, fn, "k"),
                             strides_of(v, fn, "v"), strides_of(dout, fn, "dout")};
  check_contiguous(out, fn, "out");
  check_contiguous(lse, fn, "lse");
  index_t rows = 1;
  const bool* pm = opt_mask(mask, d, &rows, fn);
  py::array dq(q.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.Tq, d.D});
  py::array dk(q.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.Tk, d.D});
  py::array dv(q.dtype(), std::vector<py::ssize_t>{d.B, d.H, d.Tk, d.Dv});
  auto run = [&](auto zero) {
    using S = decltype(zero);
    const S* pdo = cptr<S>(dout);
    const S* pq = cptr<S>(q);
    const S* pk = cptr<S>(k);
    const S* pv = cptr<S>(v);
    const S* po = cptr<S>(out);
    const S* pl = cptr<S>(lse);
    S* pdq = mptr<S>(dq);
    S* pdk = mptr<S>(dk);
    S* pdv = mptr<S>(dv);
    py::gil_scoped_release release;
    if (Ref)
      attention_backward_ref<S>(pdq, pdk, pdv, pdo, pq, pk, pv, po, pl, pm, rows, causal,
                                S(scale), d.B, d.H, d.Tq, d.Tk, d.D, d.Dv);
    else
      attention_backward<S>(pdq, pdk, pdv, pdo, pq, pk, pv, po, pl, pm, rows, causal, S(scale),
                            d.B, d.H, d.Tq, d.Tk, d.D, d.Dv, st);
  };
  dispatch_float(q, run);
  return py::make_tuple(dq, dk, dv);
}

template <bool Ref>
void def_attention(py::module_& m) {
  // String literals: the lambdas keep these pointers for their error messages.
  const char* n_f = Ref ? "attention_forward_ref" : "attention_forward";
  const char* n_b = Ref ? "attention_backward_ref" : "attention_backward";
  const std::string note = Ref ? " Plain serial loops (the C++ specification)." : "";
  m.def(
      n_f,
      [n_f](const py::array& q, const py::array& k, const py::array& v, const py::object& mask,
            bool causal, double scale) {
        return forward_impl<Ref>(n_f, q, k, v, mask, causal, scale);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("mask").none(true), py::arg("causal"),
      py::arg("scale"),
      ("softmax(q k^T * scale + mask) v over (B, H) -> (out (B, H, Tq, Dv), lse (B, H, Tq)); "
       "mask bool (B, Tk) or (B, Tq, Tk) or None; a fully masked row gives 0 and lse -inf." +
       note)
          .c_str());
  m.def(
      n_b,
      [n_b](const py::array& dout, const py::array& q, const py::array& k, const py::array& v,
            const py::array& out, const py::array& lse, const py::object& mask, bool causal,
            double scale) {
        return backward_impl<Ref>(n_b, dout, q, k, v, out, lse, mask, causal, scale);
      },
      py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
      py::arg("mask").none(true), py::arg("causal"), py::arg("scale"),
      ("Gradient of attention_forward -> (dq, dk, dv), overwritten; scores recomputed tile by "
       "tile from lse." +
       note)
          .c_str());
}

}  // namespace

void register_attention(py::module_& m) {
  def_attention<false>(m);
  def_attention<true>(m);
}

}  // namespace nanonet
