// Python bindings of the gemm op family (tformer/ops/gemm.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/gemm.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(gemm) {
  o.def("gemm", [](const py::array& a, const py::array& b, bool trans_a, bool trans_b, float alpha, float beta,
                   const OptArray& c, const std::string& device, const std::string& dtype,
                   const std::optional<std::string>& c_dtype) {
    DeviceArgs d = args(device, dtype);
    DeviceArgs dc = c_dtype ? args(device, *c_dtype) : d;  // c's dtype (float32 with half a, b)
    Tensor ta = d.put(a, "a"), tb = d.put(b, "b");
    if (ta.ndim() != 2 || tb.ndim() != 2) throw_value_error("gemm: a and b must be 2-D");
    const int64_t m_ = trans_a ? ta.dim(1) : ta.dim(0);
    const int64_t n_ = trans_b ? tb.dim(0) : tb.dim(1);
    Tensor tc = Tensor::zeros({m_, n_}, dc.dtype, dc.device);
    if (c) tc.copy_from(dc.put(*c, "c"));  // a copy: the caller's array is an input only
    ops::gemm(tc, ta, tb, trans_a, trans_b, alpha, beta);
    return dc.get(tc);
  }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0f,
     py::arg("beta") = 0.0f, py::arg("c") = py::none(), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     py::arg("c_dtype") = py::none(),
     "gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None)");

  o.def("linear_backward", [](const py::array& dy, const py::array& x, const py::array& weight, const OptArray& dx,
                              const OptArray& dweight, const OptArray& dbias, bool with_bias,
                              const std::string& device, const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tdy = d.put(dy, "dy"), tx = d.put(x, "x"), tw = d.put(weight, "weight");
    Tensor tdx = d.init_or_zeros(dx, tx.shape(), "dx");
    Tensor tdw = d.init_or_zeros(dweight, tw.shape(), "dweight");
    std::optional<Tensor> tdb;
    if (with_bias) tdb = d.init_or_zeros(dbias, {tw.ndim() == 2 ? tw.dim(0) : 0}, "dbias");
    {
      py::gil_scoped_release release;
      ops::linear_backward(&tdx, &tdw, tdb ? &*tdb : nullptr, tdy, tx, tw, dx.has_value());
    }
    return py::make_tuple(d.get(tdx), d.get(tdw), tdb ? py::object(d.get(*tdb)) : py::object(py::none()));
  }, py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("dx") = py::none(), py::arg("dweight") = py::none(),
     py::arg("dbias") = py::none(), py::arg("with_bias") = true, py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "(dx, dweight, dbias) = linear_backward(dy, x, weight) for y = x @ weight.T + bias; a given\n"
     "dx, dweight or dbias is added to (dweight / dbias default to zeros).");
}

}  // namespace tformer::bindings
