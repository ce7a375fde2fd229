// Python bindings of the int8 op family (tformer/ops/int8.h), in tformer._core.ops.
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/int8.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(int8) {
  o.def("quantize_rows", [](const py::array& x) {
    Tensor tx = tensor_from_numpy(x, DType::f32, "x");
    if (tx.ndim() != 2) throw_value_error("quantize_rows: x must be 2-D, got ", shape_str(tx.shape()));
    Tensor q = Tensor::empty(tx.shape(), DType::i8);
    Tensor scale = Tensor::empty({tx.dim(0)}, DType::f32);
    {
      py::gil_scoped_release release;
      ops::quantize_rows(q, scale, tx);
    }
    return py::make_tuple(tensor_to_numpy(q), tensor_to_numpy(scale));
  }, py::arg("x"),
     "(q, scale) = quantize_rows(x): int8 rows and their float32 scales, x ~= q * scale[:, None]");

  o.def("dequantize_rows", [](const py::array& q, const py::array& scale) {
    Tensor tq = tensor_from_numpy(q, DType::i8, "q");
    Tensor ts = tensor_from_numpy(scale, DType::f32, "scale");
    if (tq.ndim() != 2) throw_value_error("dequantize_rows: q must be 2-D, got ", shape_str(tq.shape()));
    Tensor x = Tensor::empty(tq.shape(), DType::f32);
    ops::dequantize_rows(x, tq, ts);
    return tensor_to_numpy(x);
  }, py::arg("q"), py::arg("scale"), "x = dequantize_rows(q, scale): float32 q * scale[:, None]");

  o.def("int8_linear", [](const py::array& x, const py::array& q, const py::array& scale, const OptArray& bias,
                          float alpha) {
    Tensor tx = tensor_from_numpy(x, DType::f32, "x");
    Tensor tq = tensor_from_numpy(q, DType::i8, "weight");
    Tensor ts = tensor_from_numpy(scale, DType::f32, "weight_scale");
    std::optional<Tensor> tb;
    if (bias) tb = tensor_from_numpy(*bias, DType::f32, "bias");
    if (tq.ndim() != 2) throw_value_error("int8_linear: weight must be 2-D, got ", shape_str(tq.shape()));
    if (tx.ndim() < 1) throw_value_error("int8_linear: x must have at least 1 dimension");
    Shape out_shape = tx.shape();
    out_shape.back() = tq.dim(0);
    Tensor out = Tensor::empty(out_shape, DType::f32);
    {
      py::gil_scoped_release release;
      ops::int8_linear(out, tx, tq, ts, ptr(tb), alpha);
    }
    return tensor_to_numpy(out);
  }, py::arg("x"), py::arg("weight"), py::arg("weight_scale"), py::arg("bias") = py::none(), py::arg("alpha") = 1.0f,
     "out = int8_linear(x, weight, weight_scale, bias=None, alpha=1.0): alpha * x @ (weight * scale).T + bias,\n"
     "x quantized per row on entry (tformer/ops/int8.h); CPU");

  o.def("cpu_int8_kernel", &ops::cpu_int8_kernel,
        "The int8 GEMM kernel this CPU runs: 'avx512_vnni', 'avx_vnni', 'avx2' or 'base'");
}

}  // namespace tformer::bindings
