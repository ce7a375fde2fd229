// Python bindings of the layer_norm op family (tformer/ops/layer_norm.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/layer_norm.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

TFORMER_OP_BINDINGS(layer_norm) {
  o.def("layer_norm", [](const py::array& x, const py::array& gamma, const py::array& beta, float eps,
                         const OptArray& bias, const OptArray& residual, bool return_sum, const std::string& device,
                         const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x"), tg = d.put(gamma, "gamma"), tbeta = d.put(beta, "beta");
    auto tb = d.put_opt(bias, "bias"), tr = d.put_opt(residual, "residual");
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device);
    Tensor sum = return_sum ? Tensor::empty(tx.shape(), d.dtype, d.device) : Tensor();
    ops::layer_norm(out, return_sum ? &sum : nullptr, tx, ptr(tb), ptr(tr), tg, tbeta, eps);
    if (return_sum) return py::make_tuple(d.get(out), d.get(sum));
    return d.get(out);
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps") = 1e-5f, py::arg("bias") = py::none(),
     py::arg("residual") = py::none(), py::arg("return_sum") = false, py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "layer_norm(x, gamma, beta, eps=1e-5, bias=None, residual=None, return_sum=False)");

  o.def("layer_norm_train", [](const py::array& x, const py::array& gamma, const py::array& beta, float eps,
                               const OptArray& bias, const OptArray& residual, const std::string& device,
                               const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x"), tg = d.put(gamma, "gamma"), tbeta = d.put(beta, "beta");
    auto tb = d.put_opt(bias, "bias"), tr = d.put_opt(residual, "residual");
    const int64_t rows = rows_of(tx);  // the op checks the shapes
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device), sum = Tensor::empty(tx.shape(), d.dtype, d.device);
    Tensor mean = Tensor::empty({rows}, DType::f32, d.device), rstd = Tensor::empty({rows}, DType::f32, d.device);
    {
      py::gil_scoped_release release;
      ops::layer_norm_train(out, sum, tx, ptr(tb), ptr(tr), tg, tbeta, eps, mean, rstd);
    }
    return py::make_tuple(d.get(out), d.get(sum), d.get(mean), d.get(rstd));
  }, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps") = 1e-5f, py::arg("bias") = py::none(),
     py::arg("residual") = py::none(), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "(out, s, mean, rstd) = layer_norm_train(x, gamma, beta, eps, bias, residual): layer_norm\n"
     "that also returns the sum s = x + bias + residual and per-row mean and rstd (float32).");

  o.def("layer_norm_backward", [](const py::array& dout, const py::array& s, const py::array& mean,
                                  const py::array& rstd, const py::array& gamma, const OptArray& ds,
                                  const OptArray& dgamma, const OptArray& dbeta, bool param_grads,
                                  const std::string& device, const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tdo = d.put(dout, "dout"), ts = d.put(s, "s"), tg = d.put(gamma, "gamma");
    Tensor tm = d.put_f32(mean, "mean"), tr = d.put_f32(rstd, "rstd");
    Tensor tds = d.init_or_zeros(ds, ts.shape(), "ds");
    const Shape cols{ts.ndim() ? ts.dim(-1) : 0};
    std::optional<Tensor> tdg, tdb;
    if (param_grads) {
      tdg = d.init_or_zeros(dgamma, cols, "dgamma");
      tdb = d.init_or_zeros(dbeta, cols, "dbeta");
    }
    {
      py::gil_scoped_release release;
      ops::layer_norm_backward(tds, tdg ? &*tdg : nullptr, tdb ? &*tdb : nullptr, tdo, ts, tm, tr, tg, ds.has_value());
    }
    if (!param_grads) return d.get(tds);
    return py::make_tuple(d.get(tds), d.get(*tdg), d.get(*tdb));
  }, py::arg("dout"), py::arg("s"), py::arg("mean"), py::arg("rstd"), py::arg("gamma"), py::arg("ds") = py::none(),
     py::arg("dgamma") = py::none(), py::arg("dbeta") = py::none(), py::arg("param_grads") = true,
     py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "(ds, dgamma, dbeta) = layer_norm_backward(dout, s, mean, rstd, gamma): given ds, the\n"
     "gradient is added to it (accumulate); dgamma / dbeta (default zeros) are added to.\n"
     "param_grads=False returns ds alone.");

  o.def("rms_norm", [](const py::array& x, const py::array& gamma, float eps, const OptArray& bias,
                       const OptArray& residual, bool return_sum, const std::string& device,
                       const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x"), tg = d.put(gamma, "gamma");
    auto tb = d.put_opt(bias, "bias"), tr = d.put_opt(residual, "residual");
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device);
    Tensor sum = return_sum ? Tensor::empty(tx.shape(), d.dtype, d.device) : Tensor();
    ops::rms_norm(out, return_sum ? &sum : nullptr, tx, ptr(tb), ptr(tr), tg, eps);
    if (return_sum) return py::make_tuple(d.get(out), d.get(sum));
    return d.get(out);
  }, py::arg("x"), py::arg("gamma"), py::arg("eps") = 1e-6f, py::arg("bias") = py::none(),
     py::arg("residual") = py::none(), py::arg("return_sum") = false, py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "rms_norm(x, gamma, eps=1e-6, bias=None, residual=None, return_sum=False)\n"
     "s / sqrt(mean(s^2) + eps) * gamma with s = x + bias + residual (T5's RMSNorm)");

  o.def("rms_norm_train", [](const py::array& x, const py::array& gamma, float eps, const OptArray& bias,
                             const OptArray& residual, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x"), tg = d.put(gamma, "gamma");
    auto tb = d.put_opt(bias, "bias"), tr = d.put_opt(residual, "residual");
    const int64_t rows = rows_of(tx);  // the op checks the shapes
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device), sum = Tensor::empty(tx.shape(), d.dtype, d.device);
    Tensor rstd = Tensor::empty({rows}, DType::f32, d.device);
    {
      py::gil_scoped_release release;
      ops::rms_norm_train(out, sum, tx, ptr(tb), ptr(tr), tg, eps, rstd);
    }
    return py::make_tuple(d.get(out), d.get(sum), d.get(rstd));
  }, py::arg("x"), py::arg("gamma"), py::arg("eps") = 1e-6f, py::arg("bias") = py::none(),
     py::arg("residual") = py::none(), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "(out, s, rstd) = rms_norm_train(x, gamma, eps, bias, residual): rms_norm that also\n"
     "returns the sum s = x + bias + residual and per-row rstd = 1 / sqrt(mean(s^2) + eps).");

  o.def("rms_norm_backward", [](const py::array& dout, const py::array& s, const py::array& rstd,
                                const py::array& gamma, const OptArray& ds, const OptArray& dgamma,
                                bool param_grads, const std::string& device, const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tdo = d.put(dout, "dout"), ts = d.put(s, "s"), tg = d.put(gamma, "gamma");
    Tensor tr = d.put_f32(rstd, "rstd");
    Tensor tds = d.init_or_zeros(ds, ts.shape(), "ds");
    std::optional<Tensor> tdg;
    if (param_grads) tdg = d.init_or_zeros(dgamma, Shape{ts.ndim() ? ts.dim(-1) : 0}, "dgamma");
    {
      py::gil_scoped_release release;
      ops::rms_norm_backward(tds, tdg ? &*tdg : nullptr, tdo, ts, tr, tg, ds.has_value());
    }
    if (!param_grads) return d.get(tds);
    return py::make_tuple(d.get(tds), d.get(*tdg));
  }, py::arg("dout"), py::arg("s"), py::arg("rstd"), py::arg("gamma"), py::arg("ds") = py::none(),
     py::arg("dgamma") = py::none(), py::arg("param_grads") = true, py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "(ds, dgamma) = rms_norm_backward(dout, s, rstd, gamma): given ds, the gradient is added\n"
     "to it (accumulate); dgamma (default zeros) is added to. param_grads=False returns ds alone.");
}

}  // namespace tformer::bindings
