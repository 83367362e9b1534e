// Argument checks shared by the recurrent bindings (lstm.cpp, gru.cpp): optional and required
// float arrays with x's dtype and a given shape, the (B, T) step mask, raw pointers of optional
// arguments.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "bindings/common.hpp"

namespace nanonet {
namespace bind {

// An optional float array argument: None, or a C-contiguous array with ref's dtype and `dims`.
// Returned as an object: None or the array.
inline py::object opt_float(const py::object& o, const py::array& ref, std::initializer_list<index_t> dims,
                    const char* fn, const char* name, const char* letters) {
  if (o.is_none()) return py::none();
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": " + name + " must be a numpy array or None");
  py::array a = o.cast<py::array>();
  same_dtype(ref, a, fn, "x", name);
  check_shape(a, dims, fn, name, letters);
  check_contiguous(a, fn, name);
  return std::move(a);
}

inline py::array req_float(const py::array& a, const py::array& ref, std::initializer_list<index_t> dims,
                    const char* fn, const char* name, const char* letters) {
  same_dtype(ref, a, fn, "x", name);
  check_shape(a, dims, fn, name, letters);
  check_contiguous(a, fn, name);
  return a;
}

inline py::object opt_mask(const py::object& o, index_t B, index_t T, const char* fn) {
  if (o.is_none()) return py::none();
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(fn) + ": mask must be a numpy array or None");
  py::array a = o.cast<py::array>();
  if (!a.dtype().is(py::dtype::of<std::uint8_t>()) && a.dtype().kind() != 'b')
    throw py::type_error(std::string(fn) + ": mask must be bool or uint8; got " +
                         std::string(py::str(a.dtype())));
  check_shape(a, {B, T}, fn, "mask", "(B, T)");
  check_contiguous(a, fn, "mask");
  return std::move(a);
}


template <typename T>
const T* cptr_or_null(const py::object& o) {
  return o.is_none() ? nullptr : static_cast<const T*>(o.cast<py::array>().data());
}

inline const std::uint8_t* mask_ptr(const py::object& o) {
  return o.is_none() ? nullptr : static_cast<const std::uint8_t*>(o.cast<py::array>().data());
}

}  // namespace bind
}  // namespace nanonet
