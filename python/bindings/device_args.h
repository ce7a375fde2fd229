// The op bindings' arguments (ops/*.cpp, bench_bindings.cpp): numpy arrays in, device
// tensors, numpy arrays out.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "numpy_interop.h"
#include "tformer/errors.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

namespace py = pybind11;

using OptArray = std::optional<py::array>;

struct DeviceArgs {
  Device device;
  DType dtype;
  // Read-only input on the device (may share the numpy buffer on the host).
  Tensor put(const py::array& a, const char* what) const {
    return tensor_from_numpy(a, DType::f32, what).to(device).to_dtype(dtype);
  }
  // A fresh device copy, for arrays the op updates in place.
  Tensor copy(const py::array& a, const char* what) const {
    Tensor src = put(a, what);
    Tensor t = Tensor::empty(src.shape(), dtype, device);
    t.copy_from(src);
    return t;
  }
  // float32 statistics (mean, rstd, lse) stay float32 whatever dtype is.
  Tensor put_f32(const py::array& a, const char* what) const {
    return tensor_from_numpy(a, DType::f32, what).to(device);
  }
  Tensor put_ids(const py::array& a, const char* what) const {
    return tensor_from_numpy(a, DType::i32, what).to(device);
  }
  std::optional<Tensor> put_opt(const OptArray& a, const char* what) const {
    if (!a) return std::nullopt;
    return put(*a, what);
  }
  // `init` (copied) when given, else zeros.
  Tensor init_or_zeros(const OptArray& init, const Shape& shape, const char* what) const {
    if (!init) return Tensor::zeros(shape, dtype, device);
    Tensor t = copy(*init, what);
    if (t.shape() != shape) throw_value_error(what, ": expected shape ", shape_str(shape), ", got ", shape_str(t.shape()));
    return t;
  }
  py::array get(const Tensor& t) const {
    Tensor f = t.dtype() == DType::f32 ? t : t.to_dtype(DType::f32);
    return tensor_to_numpy(f.to(Device{}));
  }
};

inline DeviceArgs args(const std::string& device, const std::string& dtype) {
  return DeviceArgs{parse_device(device), parse_dtype(dtype)};
}

inline const Tensor* ptr(const std::optional<Tensor>& t) { return t ? &*t : nullptr; }

}  // namespace tformer::bindings
