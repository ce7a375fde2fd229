// Python bindings of the dropout op family (tformer/ops/dropout.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/dropout.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(dropout) {
  o.def("dropout", [](const py::array& x, float p, uint64_t seed, uint64_t offset, const std::string& device,
                      const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x");
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device);
    {
      py::gil_scoped_release release;
      ops::dropout(out, tx, p, seed, offset);
    }
    return d.get(out);
  }, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset") = 0, py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "Inverted dropout with a counter-based mask: the same (seed, offset) gives the same mask,\n"
     "so dropout(grad, p, seed, offset) is the backward.");
}

}  // namespace tformer::bindings
