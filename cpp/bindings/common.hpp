// Helpers shared by the binding files: dtype, rank, shape and layout checks that produce
// messages naming the function, the argument, what was expected and what came.
// std::invalid_argument thrown here (or by a kernel) reaches Python as ValueError;
// TypeError is raised through py::type_error for a wrong dtype.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>

#include "nanonet/runtime.hpp"

namespace nanonet {
namespace bind {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

inline std::string dims_str(std::initializer_list<index_t> dims) {
  std::ostringstream s;
  s << "(";
  size_t i = 0;
  for (index_t d : dims) s << (i++ ? ", " : "") << d;
  if (dims.size() == 1) s << ",";
  s << ")";
  return s.str();
}

[[noreturn]] inline void fail(const std::string& fn, const std::string& msg) {
  throw std::invalid_argument(fn + ": " + msg);
}

enum class DType { f32, f64 };

inline bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
inline bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

inline DType float_dtype(const py::array& a, const char* fn, const char* name) {
  if (is_f32(a)) return DType::f32;
  if (is_f64(a)) return DType::f64;
  throw py::type_error(std::string(fn) + ": " + name + " must be float32 or float64; got " +
                       std::string(py::str(a.dtype())));
}

inline void same_dtype(const py::array& a, const py::array& b, const char* fn, const char* na,
                       const char* nb) {
  if (!a.dtype().is(b.dtype()))
    throw py::type_error(std::string(fn) + ": " + nb + " must have the dtype of " + na + " (" +
                         std::string(py::str(a.dtype())) + "); got " +
                         std::string(py::str(b.dtype())));
}

inline void check_ndim(const py::array& a, py::ssize_t ndim, const char* fn, const char* name) {
  if (a.ndim() != ndim)
    fail(fn, std::string(name) + " must be " + std::to_string(ndim) + "-D; got shape " +
                 shape_str(a));
}

// Requires every dimension to be C-contiguous.
inline void check_contiguous(const py::array& a, const char* fn, const char* name) {
  if (!(a.flags() & py::array::c_style))
    fail(fn, std::string(name) + " must be C-contiguous; got strides that are not");
}

inline void check_shape(const py::array& a, std::initializer_list<index_t> dims, const char* fn,
                        const char* name, const char* letters) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  size_t i = 0;
  for (index_t d : dims) {
    if (!ok) break;
    ok = a.shape(i++) == d;
  }
  if (!ok)
    fail(fn, std::string(name) + " must be " + letters + " = " + dims_str(dims) + "; got " +
                 shape_str(a));
}

inline void check_writeable(const py::array& a, const char* fn, const char* name) {
  if (!a.writeable()) fail(fn, std::string(name) + " must be writeable");
}

// A 2-D matrix whose rows are contiguous; rows may be spaced by any positive multiple of the
// item size (a slice of a wider array). Returns the leading dimension in elements.
inline index_t leading_dim(const py::array& a, const char* fn, const char* name) {
  check_ndim(a, 2, fn, name);
  const py::ssize_t item = a.itemsize();
  const py::ssize_t rows = a.shape(0), cols = a.shape(1);
  if (rows == 0 || cols == 0) return cols > 0 ? cols : 1;  // empty: strides are never used
  if (cols > 1 && a.strides(1) != item)
    fail(fn, std::string(name) + " must have contiguous rows (inner stride " +
                 std::to_string(item) + " bytes); got " + std::to_string(a.strides(1)));
  if (rows <= 1) return cols;
  if (a.strides(0) <= 0 || a.strides(0) % item != 0 || a.strides(0) / item < cols)
    fail(fn, std::string(name) + " must have a positive row stride of at least its width; got " +
                 std::to_string(a.strides(0)) + " bytes");
  return a.strides(0) / item;
}

// run(float{}) or run(double{}) by a's dtype, which the caller has checked is one of the two.
template <typename Run>
inline void dispatch_float(const py::array& a, Run&& run) {
  if (is_f32(a))
    run(0.0f);
  else
    run(0.0);
}

template <typename T>
inline const T* cptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <typename T>
inline T* mptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

}  // namespace bind

// One register_<area>(module) per binding file; module.cpp calls them all.
void register_runtime(pybind11::module_& m);
void register_gemm(pybind11::module_& m);
void register_dense(pybind11::module_& m);
void register_activations(pybind11::module_& m);
void register_losses(pybind11::module_& m);
void register_optimizers(pybind11::module_& m);
void register_embedding(pybind11::module_& m);
void register_lstm(pybind11::module_& m);
void register_normalization(pybind11::module_& m);
void register_pooling(pybind11::module_& m);
void register_attention(pybind11::module_& m);
void register_per_example(pybind11::module_& m);
void register_random(pybind11::module_& m);
void register_conv(pybind11::module_& m);
void register_train_step(pybind11::module_& m);

void register_gru(pybind11::module_& m);

}  // namespace nanonet
