// The training ops of train_ops.h on numpy arrays, in tformer._core.ops (tests and
// experiments): inputs are copied to the device, the op runs with the GIL released,
// results come back as new numpy arrays. Arrays that an op accumulates into (dgamma,
// dtable, ...) may be given as initial values; they are copied, never modified.
#include <pybind11/stl.h>

#include "device_args.h"
#include "register.h"
#include "tformer/train_ops.h"

namespace tformer::bindings {

namespace {

void register_norm_linear(py::module_& o) {
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
}

void register_embedding_loss(py::module_& o) {
  o.def("embedding_backward", [](const py::array& dout, const py::array& ids, int64_t vocab_size, float scale,
                                 const OptArray& position_ids, int64_t num_positions, int32_t skip_id,
                                 const OptArray& dtable, const OptArray& dpositions, const std::string& device,
                                 const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tdo = d.put(dout, "dout"), tid = d.put_ids(ids, "ids");
    const int64_t dim = tdo.ndim() ? tdo.dim(-1) : 0;
    Tensor tdt = d.init_or_zeros(dtable, {vocab_size, dim}, "dtable");
    std::optional<Tensor> tpid, tdp;
    if (position_ids) {
      tpid = d.put_ids(*position_ids, "position_ids");
      tdp = d.init_or_zeros(dpositions, {num_positions, dim}, "dpositions");
    }
    {
      py::gil_scoped_release release;
      ops::embedding_backward(&tdt, tdp ? &*tdp : nullptr, tdo, tid, ptr(tpid), scale, skip_id);
    }
    if (!tdp) return d.get(tdt);
    return py::make_tuple(d.get(tdt), d.get(*tdp));
  }, py::arg("dout"), py::arg("ids"), py::arg("vocab_size"), py::arg("scale") = 1.0f,
     py::arg("position_ids") = py::none(), py::arg("num_positions") = 0, py::arg("skip_id") = -1,
     py::arg("dtable") = py::none(), py::arg("dpositions") = py::none(), py::arg("device") = "cpu",
     py::arg("dtype") = "float32",
     "dtable (or (dtable, dpositions) with position_ids) = embedding_backward(dout, ids, vocab_size,\n"
     "scale): scatter-add of scale * dout by id (+ dout by position id); rows with id skip_id skipped.");

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

  o.def("sum_squares", [](const py::array& x, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x");
    py::gil_scoped_release release;
    return ops::sum_squares(tx);
  }, py::arg("x"), py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "Sum of squares of all elements, accumulated in double.");
}

}  // namespace

void register_train_ops(py::module_& m) {
  py::module_ o = m.attr("ops").cast<py::module_>();  // registered by register_ops
  register_norm_linear(o);
  register_embedding_loss(o);
  train::register_attention(o);
}

}  // namespace tformer::bindings
