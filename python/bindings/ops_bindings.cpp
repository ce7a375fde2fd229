// Single ops on numpy arrays, for tests and experiments: inputs are copied to the
// device, the op runs, the result comes back as a new numpy array.
#include <pybind11/stl.h>

#include <optional>

#include "device_args.h"
#include "numpy_interop.h"
#include "register.h"
#include "tformer/errors.h"
#include "tformer/ops.h"

namespace py = pybind11;

namespace tformer::bindings {

void register_ops(py::module_& m) {
  py::module_ o = m.def_submodule("ops", "Single ops on numpy arrays (tests, experiments).");

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
     py::arg("c_dtype") = py::none());

  o.def("bias_act", [](const py::array& x, const OptArray& bias, const OptArray& residual,
                       const std::string& activation, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tx = d.put(x, "x");
    auto tb = d.put_opt(bias, "bias"), tr = d.put_opt(residual, "residual");
    Tensor out = Tensor::empty(tx.shape(), d.dtype, d.device);
    ops::bias_act(out, tx, ptr(tb), ptr(tr), ops::parse_activation(activation));
    return d.get(out);
  }, py::arg("x"), py::arg("bias") = py::none(), py::arg("residual") = py::none(), py::arg("activation") = "none",
     py::arg("device") = "cpu", py::arg("dtype") = "float32");

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
     py::arg("dtype") = "float32");

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
     py::arg("dtype") = "float32");

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
  }, py::arg("x"), py::arg("activation") = "gelu_tanh", py::arg("device") = "cpu", py::arg("dtype") = "float32");

  o.def("embedding", [](const py::array& ids, const py::array& table, float scale, const OptArray& positions,
                        const OptArray& position_ids, const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    Tensor tt = d.put(table, "table");
    Tensor tid = tensor_from_numpy(ids, DType::i32, "ids");
    if (tt.ndim() != 2) throw_value_error("embedding: table must be 2-D, got ", shape_str(tt.shape()));
    const int32_t* idp = tid.data<int32_t>();
    for (int64_t i = 0; i < tid.numel(); ++i)
      if (idp[i] < 0 || idp[i] >= tt.dim(0))
        throw_value_error("embedding: id ", idp[i], " outside the table [0, ", tt.dim(0), ")");
    std::optional<Tensor> tp, tpid;
    if (positions || position_ids) {
      if (!positions || !position_ids) throw_value_error("embedding: positions and position_ids go together");
      tp = d.put(*positions, "positions");
      Tensor hp = tensor_from_numpy(*position_ids, DType::i32, "position_ids");
      const int32_t* pp = hp.data<int32_t>();
      for (int64_t i = 0; i < hp.numel(); ++i)
        if (pp[i] < 0 || pp[i] >= tp->dim(0))
          throw_value_error("embedding: position id ", pp[i], " outside the table [0, ", tp->dim(0), ")");
      tpid = hp.to(d.device);
    }
    Shape shape = tid.shape();
    shape.push_back(tt.dim(1));
    Tensor out = Tensor::empty(shape, d.dtype, d.device);
    ops::embedding(out, tid.to(d.device), tt, scale, ptr(tpid), ptr(tp));
    return d.get(out);
  }, py::arg("ids"), py::arg("table"), py::arg("scale") = 1.0f, py::arg("positions") = py::none(),
     py::arg("position_ids") = py::none(), py::arg("device") = "cpu", py::arg("dtype") = "float32");

  o.def("attention", [](const py::array& q, const py::array& k, const py::array& v, int64_t num_heads,
                        const OptArray& kv_lengths, bool causal, int64_t causal_offset, std::optional<float> scale,
                        const OptArray& rel_bias, int64_t rel_bias_origin, int64_t kv_group, bool return_weights,
                        const std::string& device, const std::string& dtype,
                        const std::optional<std::string>& rel_bias_dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tq = d.put(q, "q"), tk = d.put(k, "k"), tv = d.put(v, "v");
    if (tq.ndim() != 3) throw_value_error("attention: q must be 3-D (batch, len, heads*head_dim), got ", shape_str(tq.shape()));
    std::optional<Tensor> tl;
    if (kv_lengths) tl = d.put_ids(*kv_lengths, "kv_lengths");
    // rel_bias_dtype (default: dtype) lets a test give a bias of the wrong dtype.
    std::optional<Tensor> tbias;
    if (rel_bias && rel_bias_dtype && *rel_bias_dtype == "int32") tbias = d.put_ids(*rel_bias, "rel_bias");
    else tbias = (rel_bias_dtype ? args(device, *rel_bias_dtype) : d).put_opt(rel_bias, "rel_bias");
    Tensor out = Tensor::empty(tq.shape(), d.dtype, d.device);
    Tensor weights = return_weights ? Tensor::empty({tq.dim(0), tq.dim(1), tk.ndim() == 3 ? tk.dim(1) : 0}, DType::f32, d.device)
                                    : Tensor();
    ops::AttentionOptions opt;
    opt.heads = num_heads;
    opt.kv_lengths = ptr(tl);
    opt.causal = causal;
    opt.causal_offset = causal_offset;
    opt.scale = scale ? *scale : 0.0f;
    opt.rel_bias = ptr(tbias);
    opt.rel_bias_origin = rel_bias_origin;
    opt.kv_group = kv_group;
    opt.weights_out = return_weights ? &weights : nullptr;
    if (scale && *scale == 0.0f) throw_value_error("attention: scale must be non-zero");
    ops::attention(out, {&tq, 0}, {&tk, 0}, {&tv, 0}, opt);
    if (return_weights) return py::make_tuple(d.get(out), d.get(weights));
    return d.get(out);
  }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("num_heads"), py::arg("kv_lengths") = py::none(),
     py::arg("causal") = false, py::arg("causal_offset") = 0, py::arg("scale") = py::none(),
     py::arg("rel_bias") = py::none(), py::arg("rel_bias_origin") = 0, py::arg("kv_group") = 1,
     py::arg("return_weights") = false, py::arg("device") = "cpu", py::arg("dtype") = "float32",
     py::arg("rel_bias_dtype") = py::none());
}

}  // namespace tformer::bindings
