// Python bindings of the cross_entropy op family (tformer/ops/cross_entropy.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/cross_entropy.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(cross_entropy) {
  o.def("cross_entropy", [](const py::array& logits, const py::array& labels, float smoothing,
                            int32_t ignore_index, float grad_scale, bool with_grad, const std::string& device,
                            const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tl = d.put(logits, "logits"), tlab = d.put_ids(labels, "labels");
    if (tl.ndim() < 1) throw_value_error("cross_entropy: logits must have at least 1 dimension");
    Tensor loss = Tensor::empty(tlab.shape(), DType::f32, d.device);
    std::optional<Tensor> grad;
    if (with_grad) grad = Tensor::empty(tl.shape(), d.dtype, d.device);
    {
      py::gil_scoped_release release;
      ops::cross_entropy(loss, grad ? &*grad : nullptr, tl, tlab, smoothing, ignore_index, grad_scale);
    }
    if (!grad) return d.get(loss);
    return py::make_tuple(d.get(loss), d.get(*grad));
  }, py::arg("logits"), py::arg("labels"), py::arg("smoothing") = 0.0f, py::arg("ignore_index") = -100,
     py::arg("grad_scale") = 1.0f, py::arg("with_grad") = true, py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "(loss, dlogits) = cross_entropy(logits, labels, smoothing, ignore_index, grad_scale): per-row\n"
     "torch.nn.functional.cross_entropy(..., reduction='none') and its gradient times grad_scale.");
}

}  // namespace tformer::bindings
