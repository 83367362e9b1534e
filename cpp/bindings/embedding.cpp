#include "nanonet/embedding.hpp"

#include <cstdint>
#include <vector>

#include "bindings/common.hpp"

namespace nanonet {

namespace py = pybind11;
using namespace bind;

namespace {

bool is_i32(const py::array& a) { return a.dtype().is(py::dtype::of<int32_t>()); }
bool is_i64(const py::array& a) { return a.dtype().is(py::dtype::of<int64_t>()); }

void check_ids_array(const py::array& ids, const char* fn) {
  if (!is_i32(ids) && !is_i64(ids))
    throw py::type_error(std::string(fn) + ": ids must be int32 or int64; got " +
                         std::string(py::str(ids.dtype())));
  check_contiguous(ids, fn, "ids");
}

// ValueError naming the first bad id, its position (as an index tuple) and V.
template <typename I>
void check_id_range(const py::array& ids, index_t V, const char* fn) {
  const I* p = cptr<I>(ids);
  index_t n = embedding_find_bad_id<I>(p, index_t(ids.size()), V);
  if (n < 0) return;
  std::vector<index_t> idx(size_t(ids.ndim()));
  index_t rest = n;
  for (py::ssize_t d = ids.ndim() - 1; d >= 0; --d) {
    idx[size_t(d)] = rest % ids.shape(d);
    rest /= ids.shape(d);
  }
  std::string where = "(";
  for (size_t d = 0; d < idx.size(); ++d)
    where += (d ? ", " : "") + std::to_string(idx[d]);
  where += idx.size() == 1 ? ",)" : ")";
  fail(fn, "ids must be in [0, V) = [0, " + std::to_string(V) + "); got " +
               std::to_string(int64_t(p[n])) + " at position " + where);
}

std::vector<py::ssize_t> ids_shape_plus(const py::array& ids, index_t E) {
  std::vector<py::ssize_t> shape(ids.shape(), ids.shape() + ids.ndim());
  shape.push_back(E);
  return shape;
}

py::array forward_impl(const char* fn, bool use_ref, const py::array& ids,
                       const py::array& embeddings) {
  check_ids_array(ids, fn);
  float_dtype(embeddings, fn, "embeddings");
  check_ndim(embeddings, 2, fn, "embeddings");
  check_contiguous(embeddings, fn, "embeddings");
  const index_t V = embeddings.shape(0), E = embeddings.shape(1), N = ids.size();
  if (is_i32(ids))
    check_id_range<int32_t>(ids, V, fn);
  else
    check_id_range<int64_t>(ids, V, fn);
  py::array y(embeddings.dtype(), ids_shape_plus(ids, E));
  auto run = [&](auto t0, auto i0) {
    using T = decltype(t0);
    using I = decltype(i0);
    const I* pi = cptr<I>(ids);
    const T* pe = cptr<T>(embeddings);
    T* py_ = mptr<T>(y);
    py::gil_scoped_release release;
    if (use_ref)
      embedding_forward_ref<T, I>(py_, pi, pe, N, V, E);
    else
      embedding_forward<T, I>(py_, pi, pe, N, V, E);
  };
  if (is_f32(embeddings))
    is_i32(ids) ? run(0.0f, int32_t(0)) : run(0.0f, int64_t(0));
  else
    is_i32(ids) ? run(0.0, int32_t(0)) : run(0.0, int64_t(0));
  return y;
}

py::array backward_impl(const char* fn, bool use_ref, const py::array& dy, const py::array& ids,
                        index_t V) {
  check_ids_array(ids, fn);
  float_dtype(dy, fn, "dy");
  check_contiguous(dy, fn, "dy");
  if (V < 0) fail(fn, "input_dim must be >= 0; got " + std::to_string(V));
  bool shape_ok = dy.ndim() == ids.ndim() + 1;
  for (py::ssize_t d = 0; shape_ok && d < ids.ndim(); ++d) shape_ok = dy.shape(d) == ids.shape(d);
  if (!shape_ok)
    fail(fn, "dy must have the shape of ids plus one axis E, ids " + shape_str(ids) +
                 " + (E,); got " + shape_str(dy));
  const index_t E = dy.shape(dy.ndim() - 1), N = ids.size();
  if (is_i32(ids))
    check_id_range<int32_t>(ids, V, fn);
  else
    check_id_range<int64_t>(ids, V, fn);
  py::array de(dy.dtype(), std::vector<py::ssize_t>{V, E});
  auto run = [&](auto t0, auto i0) {
    using T = decltype(t0);
    using I = decltype(i0);
    const I* pi = cptr<I>(ids);
    const T* pdy = cptr<T>(dy);
    T* pde = mptr<T>(de);
    py::gil_scoped_release release;
    if (use_ref)
      embedding_backward_ref<T, I>(pde, pdy, pi, N, V, E);
    else
      embedding_backward<T, I>(pde, pdy, pi, N, V, E);
  };
  if (is_f32(dy))
    is_i32(ids) ? run(0.0f, int32_t(0)) : run(0.0f, int64_t(0));
  else
    is_i32(ids) ? run(0.0, int32_t(0)) : run(0.0, int64_t(0));
  return de;
}

}  // namespace

void register_embedding(py::module_& m) {
  m.def(
      "embedding_forward",
      [](const py::array& ids, const py::array& embeddings, bool use_ref) {
        return forward_impl(use_ref ? "embedding_forward_ref" : "embedding_forward", use_ref, ids,
                            embeddings);
      },
      py::arg("ids"), py::arg("embeddings"), py::arg("use_ref") = false,
      "Gather: y[..., :] = embeddings[ids[...], :]. ids int32/int64 (any shape, C-contiguous), "
      "embeddings (V, E) float32/float64 C-contiguous; returns ids.shape + (E,). ValueError for "
      "an id outside [0, V). use_ref runs the scalar specification.");
  m.def(
      "embedding_backward",
      [](const py::array& dy, const py::array& ids, index_t input_dim, bool use_ref) {
        return backward_impl(use_ref ? "embedding_backward_ref" : "embedding_backward", use_ref,
                             dy, ids, input_dim);
      },
      py::arg("dy"), py::arg("ids"), py::arg("input_dim"), py::arg("use_ref") = false,
      "Scatter-add: returns dembeddings (input_dim, E), row v = sum of dy rows whose id is v "
      "(0 where no id). Deterministic (counting sort, rows split between threads, no atomics).");
}

}  // namespace nanonet
