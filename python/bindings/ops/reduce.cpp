// Python bindings of the reduce op family (tformer/ops/reduce.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/reduce.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(reduce) {
  o.def("sum_rows", [](const py::array& dy, const OptArray& dbias, const std::string& device,
                       const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tdy = d.put(dy, "dy");
    Tensor out = d.init_or_zeros(dbias, {tdy.ndim() ? tdy.dim(-1) : 0}, "dbias");
    {
      py::gil_scoped_release release;
      ops::sum_rows(out, tdy);
    }
    return d.get(out);
  }, py::arg("dy"), py::arg("dbias") = py::none(), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "dbias + dy summed over all but the last axis.");

  o.def("sum_squares", [](const py::array& x, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x");
    py::gil_scoped_release release;
    return ops::sum_squares(tx);
  }, py::arg("x"), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "Sum of squares of all elements, accumulated in double.");
}

}  // namespace tformer::bindings
