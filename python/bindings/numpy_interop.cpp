#include "numpy_interop.h"

#include <memory>

#include "tformer/errors.h"

namespace tformer::bindings {

Tensor tensor_from_numpy(const py::array& array, DType dtype, const std::string& what) {
  py::array converted;
  if (dtype == DType::f32) {
    if (!(array.dtype().kind() == 'f' || array.dtype().kind() == 'i' || array.dtype().kind() == 'u'))
      throw_type_error(what, ": expected a float array, got dtype ", std::string(py::str(array.dtype())));
    converted = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(array);
  } else if (dtype == DType::i32) {
    const char kind = array.dtype().kind();
    if (kind != 'i' && kind != 'u')
      throw_type_error(what, ": expected an integer array, got dtype ", std::string(py::str(array.dtype())));
    converted = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(array);
  } else if (dtype == DType::i8) {
    // int8 weights are taken as they are: a wider array is refused, not wrapped around.
    if (array.dtype().kind() != 'i' || array.dtype().itemsize() != 1)
      throw_type_error(what, ": expected an int8 array, got dtype ", std::string(py::str(array.dtype())));
    converted = py::array_t<int8_t, py::array::c_style | py::array::forcecast>::ensure(array);
  } else {
    throw_type_error(what, ": unsupported dtype ", dtype_name(dtype));
  }
  if (!converted) throw py::error_already_set();
  Shape shape(converted.shape(), converted.shape() + converted.ndim());
  // The numpy array object owns the memory; hold a reference for as long as the tensor lives.
  auto* keep = new py::object(converted);
  std::shared_ptr<void> owner(keep, [](void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(p);
  });
  return Tensor::wrap_host(const_cast<void*>(converted.data()), shape, dtype, owner);
}

py::array tensor_to_numpy(const Tensor& tensor) {
  Tensor host = tensor.device().is_cpu() ? tensor : tensor.to(Device{});
  std::vector<py::ssize_t> shape(host.shape().begin(), host.shape().end());
  auto* keep = new Tensor(host);
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  switch (host.dtype()) {
    case DType::f32: return py::array_t<float>(shape, host.data<float>(), owner);
    case DType::i32: return py::array_t<int32_t>(shape, host.data<int32_t>(), owner);
    case DType::i8: return py::array_t<int8_t>(shape, host.data<int8_t>(), owner);
    case DType::f16: return py::array(py::dtype("float16"), shape, host.raw(), owner);
    case DType::bf16: {
      // numpy has no bfloat16: hand back the raw bits as uint16.
      return py::array(py::dtype("uint16"), shape, host.raw(), owner);
    }
  }
  throw_type_error("unsupported dtype");
}

}  // namespace tformer::bindings
