// Python bindings of the bias_act op family (tformer/ops/bias_act.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/bias_act.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(bias_act) {
  o.def("bias_act", [](const py::array& x, const OptArray& bias, const OptArray& residual,
                       const std::string& activation, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x");
    auto tb = d.put_opt(bias, "bias"), tr = d.put_opt(residual, "residual");
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device);
    ops::bias_act(out, tx, ptr(tb), ptr(tr), ops::parse_activation(activation));
    return d.get(out);
  }, py::arg("x"), py::arg("bias") = py::none(), py::arg("residual") = py::none(), py::arg("activation") = "none",
     py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "bias_act(x, bias=None, residual=None, activation=\"none\"): act(x + bias) + residual");

  o.def("activation_backward", [](const py::array& dy, const py::array& z, const std::string& activation,
                                  const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tdy = d.put(dy, "dy"), tz = d.put(z, "z");
    const Activation act = ops::parse_activation(activation);
    Tensor dz = Tensor::empty(tz.shape(), d.dtype, d.device);
    {
      py::gil_scoped_release release;
      ops::bias_act_backward(dz, tdy, tz, act);
    }
    return d.get(dz);
  }, py::arg("dy"), py::arg("z"), py::arg("activation"), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "dz = activation_backward(dy, z, activation): dy * act'(z).");
}

}  // namespace tformer::bindings
