// Python bindings of the adamw op family (tformer/ops/adamw.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/adamw.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(adamw) {
  o.def("adamw", [](const py::array& param, const py::array& grad, const py::array& m, const py::array& v,
                    double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
                    float grad_scale, const std::string& device, const std::optional<std::string>& half_dtype) {
    DeviceArgs d = args(device, "float32");
    Tensor tp = d.copy(param, "param"), tm = d.copy(m, "m"), tv = d.copy(v, "v");
    Tensor tg = d.put(grad, "grad");
    std::optional<Tensor> th;  // the half-precision copy of the updated weights (mixed precision)
    if (half_dtype) th = Tensor::zeros(tp.shape(), parse_dtype(*half_dtype), d.device);
    ops::AdamWOptions opt;
    opt.lr = lr;
    opt.beta1 = beta1;
    opt.beta2 = beta2;
    opt.eps = eps;
    opt.weight_decay = weight_decay;
    opt.step = step;
    opt.grad_scale = grad_scale;
    {
      py::gil_scoped_release release;
      ops::adamw(tp, tg, tm, tv, opt, th ? &*th : nullptr);
    }
    if (th) return py::tuple(py::make_tuple(d.get(tp), d.get(tm), d.get(tv), d.get(*th)));
    return py::tuple(py::make_tuple(d.get(tp), d.get(tm), d.get(tv)));
  }, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("lr") = 1e-3,
     py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
     py::arg("step") = 1, py::arg("grad_scale") = 1.0f, py::arg("device") = "cpu", py::arg("half_dtype") = py::none(),
     "(param, m, v) = adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step): one\n"
     "torch.optim.AdamW step (step is 1-based); new arrays, the inputs are not modified.\n"
     "half_dtype ('float16'/'bfloat16', CUDA only): param is a float32 master copy and a fourth\n"
     "array returns the updated weights rounded to half_dtype (as float32 values).");
}

}  // namespace tformer::bindings
