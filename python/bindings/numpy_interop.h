// Zero-copy conversion between numpy arrays and host Tensors.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "tformer/tensor.h"

namespace tformer::bindings {

namespace py = pybind11;

// A host Tensor viewing a C-contiguous numpy array of float32/int32 (kept alive by
// the Tensor). Other layouts and dtypes are converted (copied) first: float arrays
// to float32, integer arrays to int32 (after a range check). `what` names the
// argument in error messages.
Tensor tensor_from_numpy(const py::array& array, DType dtype, const std::string& what);

// A numpy array viewing a host Tensor's memory (the array keeps the storage alive).
// Tensors on a device are copied to the host first.
py::array tensor_to_numpy(const Tensor& tensor);

}  // namespace tformer::bindings
