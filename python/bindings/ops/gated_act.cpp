// Python bindings of the gated_act op family (tformer/ops/gated_act.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/gated_act.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(gated_act) {
  o.def("gated_act", [](const py::array& x, const std::string& activation, const std::string& device,
                        const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x");
    if (tx.ndim() < 1) throw_value_error("gated_act: x must have at least 1 dimension");
    Shape shape = tx.shape();
    shape.back() /= 2;  // an odd width is refused by the op
    Tensor out = Tensor::empty(shape, d.dtype, d.device);
    ops::gated_act(out, tx, ops::parse_activation(activation));
    return d.get(out);
  }, py::arg("x"), py::arg("activation") = "gelu_tanh", py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "gated_act(x, activation=\"gelu_tanh\")   act(x[..., :n]) * x[..., n:] for x (..., 2n)");

  o.def("gated_act_backward", [](const py::array& dy, const py::array& x, const std::string& activation,
                                 const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tdy = d.put(dy, "dy"), tx = d.put(x, "x");
    const Activation act = ops::parse_activation(activation);
    Tensor dx = Tensor::empty(tx.shape(), d.dtype, d.device);
    {
      py::gil_scoped_release release;
      ops::gated_act_backward(dx, tdy, tx, act);
    }
    return d.get(dx);
  }, py::arg("dy"), py::arg("x"), py::arg("activation"), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "dx = gated_act_backward(dy, x, activation): the gradient of act(x[..., :n]) * x[..., n:]\n"
     "with respect to x (..., 2n), from dy (..., n).");
}

}  // namespace tformer::bindings
