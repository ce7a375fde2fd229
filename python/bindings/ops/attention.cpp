// Python bindings of the attention op family (tformer/ops/attention.h), in tformer._core.ops:
// numpy arrays in, the op on the device, new numpy arrays out (ops_bindings.cpp).
#include <pybind11/stl.h>

#include <optional>

#include "../device_args.h"
#include "op_bindings.h"
#include "tformer/ops/attention.h"
#include "tformer/tensor.h"

namespace tformer::bindings {

namespace {

ops::AttentionOptions attention_options(int64_t num_heads, const std::optional<Tensor>& kv_lengths, bool causal,
                                        int64_t causal_offset, std::optional<float> scale,
                                        const std::optional<Tensor>& rel_bias, int64_t rel_bias_origin) {
  if (scale && *scale == 0.0f) throw_value_error("attention: scale must be non-zero");
  ops::AttentionOptions opt;
  opt.heads = num_heads;
  opt.kv_lengths = ptr(kv_lengths);
  opt.causal = causal;
  opt.causal_offset = causal_offset;
  opt.scale = scale ? *scale : 0.0f;
  opt.rel_bias = ptr(rel_bias);
  opt.rel_bias_origin = rel_bias_origin;
  return opt;
}

// Fused mode: q is one (batch, len, 3 * width) buffer holding q, k and v side by side.
int64_t fused_width(const Tensor& qkv) {
  if (qkv.ndim() != 3 || qkv.dim(2) % 3 != 0)
    throw_value_error("attention: a fused qkv must be (batch, len, 3 * width), got ", shape_str(qkv.shape()));
  return qkv.dim(2) / 3;
}

}  // namespace

TFORMER_OP_BINDINGS(attention) {
  o.def("attention", [](const py::array& q, const py::array& k, const py::array& v, int64_t num_heads,
                        const OptArray& kv_lengths, bool causal, int64_t causal_offset, std::optional<float> scale,
                        const OptArray& rel_bias, int64_t rel_bias_origin, int64_t kv_group, bool return_weights,
                        const std::string& device, const std::string& dtype,
                        const std::optional<std::string>& rel_bias_dtype, const OptArray& block_table,
                        int64_t block_size, const OptArray& rel_bias_origins) -> py::object {
    DeviceArgs d = args(device, dtype);
    Tensor tq = d.put(q, "q"), tk = d.put(k, "k"), tv = d.put(v, "v");
    if (tq.ndim() != 3) throw_value_error("attention: q must be 3-D (batch, len, heads*head_dim), got ", shape_str(tq.shape()));
    std::optional<Tensor> tl;
    if (kv_lengths) tl = d.put_ids(*kv_lengths, "kv_lengths");
    // rel_bias_dtype (default: dtype) lets a test give a bias of the wrong dtype.
    std::optional<Tensor> tbias;
    if (rel_bias && rel_bias_dtype && *rel_bias_dtype == "int32") tbias = d.put_ids(*rel_bias, "rel_bias");
    else tbias = (rel_bias_dtype ? args(device, *rel_bias_dtype) : d).put_opt(rel_bias, "rel_bias");
    std::optional<Tensor> ttable, torigins;
    if (block_table) ttable = d.put_ids(*block_table, "block_table");
    if (rel_bias_origins) torigins = d.put_ids(*rel_bias_origins, "rel_bias_origins");
    Tensor out = Tensor::empty(tq.shape(), d.dtype, d.device);
    // kv_len: the pool's block_size times the table's blocks per row when paged.
    const int64_t kv_len = ttable && ttable->ndim() == 2 ? ttable->dim(1) * block_size : tk.ndim() == 3 ? tk.dim(1) : 0;
    Tensor weights = return_weights ? Tensor::empty({tq.dim(0), tq.dim(1), kv_len}, DType::f32, d.device) : Tensor();
    ops::AttentionOptions opt =
        attention_options(num_heads, tl, causal, causal_offset, scale, tbias, rel_bias_origin);
    opt.kv_group = kv_group;
    opt.weights_out = return_weights ? &weights : nullptr;
    opt.block_table = ptr(ttable);
    opt.block_size = block_size;
    opt.rel_bias_origins = ptr(torigins);
    ops::attention(out, {&tq, 0}, {&tk, 0}, {&tv, 0}, opt);
    if (return_weights) return py::make_tuple(d.get(out), d.get(weights));
    return d.get(out);
  }, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("num_heads"), py::arg("kv_lengths") = py::none(),
     py::arg("causal") = false, py::arg("causal_offset") = 0, py::arg("scale") = py::none(),
     py::arg("rel_bias") = py::none(), py::arg("rel_bias_origin") = 0, py::arg("kv_group") = 1,
     py::arg("return_weights") = false, py::arg("device") = "cpu", py::arg("dtype") = "float32",
     py::arg("rel_bias_dtype") = py::none(), py::arg("block_table") = py::none(), py::arg("block_size") = 0,
     py::arg("rel_bias_origins") = py::none(),
     "attention(q, k, v, num_heads, kv_lengths=None, causal=False, causal_offset=0, scale=None,\n"
     "rel_bias=None, rel_bias_origin=0, kv_group=1, return_weights=False, rel_bias_dtype=None,\n"
     "block_table=None, block_size=0, rel_bias_origins=None)\n"
     "block_table int32 (batch, blocks_per_row): paged K/V, k and v being pools (num_blocks,\n"
     "block_size, width); key j of row b is k[block_table[b, j // block_size], j % block_size]\n"
     "(q_len 1, kv_group 1, kv_lengths required); rel_bias_origins int32 (batch): per-row origins\n"
     "rel_bias (span, num_heads): T5's relative position bias, score(i, j) += rel_bias[origin\n"
     "+ j - i, h]; kv_group: query batch b reads k/v batch b // kv_group; return_weights:\n"
     "(out, weights) with the float32 (batch, q_len, kv_len) probabilities averaged over heads");

  o.def("attention_train", [](const py::array& q, const OptArray& k, const OptArray& v, int64_t num_heads,
                              const OptArray& kv_lengths, bool causal, int64_t causal_offset,
                              std::optional<float> scale, const OptArray& rel_bias, int64_t rel_bias_origin,
                              const std::string& device, const std::string& dtype) {
    DeviceArgs d = args(device, dtype);
    if (k.has_value() != v.has_value()) throw_value_error("attention_train: give both k and v, or neither (fused q)");
    auto trb = d.put_opt(rel_bias, "rel_bias");
    Tensor tq = d.put(q, "q");
    std::optional<Tensor> tk = d.put_opt(k, "k"), tv = d.put_opt(v, "v"), tl;  // none: fused q
    if (kv_lengths) tl = d.put_ids(*kv_lengths, "kv_lengths");
    if (tq.ndim() != 3) throw_value_error("attention_train: q must be 3-D, got ", shape_str(tq.shape()));
    const int64_t width = k ? tq.dim(2) : fused_width(tq);
    if (num_heads < 1) throw_value_error("attention_train: num_heads must be >= 1, got ", num_heads);
    Tensor out = Tensor::empty({tq.dim(0), tq.dim(1), width}, d.dtype, d.device);
    Tensor lse = Tensor::empty({tq.dim(0), num_heads, tq.dim(1)}, DType::f32, d.device);
    ops::AttentionOptions opt = attention_options(num_heads, tl, causal, causal_offset, scale, trb, rel_bias_origin);
    {
      py::gil_scoped_release release;
      if (k) ops::attention_train(out, {&tq, 0}, {&*tk, 0}, {&*tv, 0}, opt, lse);
      else ops::attention_train(out, {&tq, 0}, {&tq, width}, {&tq, 2 * width}, opt, lse);
    }
    return py::make_tuple(d.get(out), d.get(lse));
  }, py::arg("q"), py::arg("k") = py::none(), py::arg("v") = py::none(), py::arg("num_heads") = 1,
     py::arg("kv_lengths") = py::none(), py::arg("causal") = false, py::arg("causal_offset") = 0,
     py::arg("scale") = py::none(), py::arg("rel_bias") = py::none(), py::arg("rel_bias_origin") = 0,
     py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "(out, lse) = attention_train(q, k, v, num_heads, ...): attention that also returns the\n"
     "log-sum-exp float32 (batch, heads, q_len). With k and v None, q is one fused\n"
     "(batch, len, 3 * width) buffer. rel_bias (span, heads): score(i, j) += rel_bias[origin + j - i].\n"
     "Example: out, lse = ops.attention_train(q, k, v, 4)");

  o.def("attention_backward", [](const py::array& dout, const py::array& q, const OptArray& k, const OptArray& v,
                                 const py::array& out, const py::array& lse, int64_t num_heads,
                                 const OptArray& kv_lengths, bool causal, int64_t causal_offset,
                                 std::optional<float> scale, const OptArray& rel_bias, int64_t rel_bias_origin,
                                 const std::string& device, const std::string& dtype) -> py::object {
    DeviceArgs d = args(device, dtype);
    if (k.has_value() != v.has_value()) throw_value_error("attention_backward: give both k and v, or neither (fused q)");
    auto trb = d.put_opt(rel_bias, "rel_bias");
    // The bias gradient (float32, accumulated from zeros) when there is a bias.
    std::optional<Tensor> drb;
    if (trb) drb = Tensor::zeros(trb->shape(), DType::f32, d.device);
    auto with_drb = [&](py::object grads) -> py::object {
      if (!drb) return grads;
      py::tuple t = grads.cast<py::tuple>();
      py::list l(t);
      l.append(d.get(*drb));
      return py::tuple(l);
    };
    Tensor tq = d.put(q, "q"), tout = d.put(out, "out"), tdout = d.put(dout, "dout");
    Tensor tlse = d.put_f32(lse, "lse");
    std::optional<Tensor> tk = d.put_opt(k, "k"), tv = d.put_opt(v, "v"), tl;  // none: fused q
    if (kv_lengths) tl = d.put_ids(*kv_lengths, "kv_lengths");
    ops::AttentionOptions opt = attention_options(num_heads, tl, causal, causal_offset, scale, trb, rel_bias_origin);
    if (!k) {  // fused: one gradient buffer laid out like qkv
      const int64_t width = fused_width(tq);
      Tensor dqkv = Tensor::empty(tq.shape(), d.dtype, d.device);
      {
        py::gil_scoped_release release;
        ops::attention_backward({&dqkv, 0}, {&dqkv, width}, {&dqkv, 2 * width}, {&tq, 0}, {&tq, width},
                                {&tq, 2 * width}, tout, tdout, tlse, opt, drb ? &*drb : nullptr);
      }
      if (drb) return py::make_tuple(d.get(dqkv), d.get(*drb));
      return d.get(dqkv);
    }
    Tensor dq = Tensor::empty(tq.shape(), d.dtype, d.device);
    Tensor dk = Tensor::empty(tk->shape(), d.dtype, d.device);
    Tensor dv = Tensor::empty(tv->shape(), d.dtype, d.device);
    {
      py::gil_scoped_release release;
      ops::attention_backward({&dq, 0}, {&dk, 0}, {&dv, 0}, {&tq, 0}, {&*tk, 0}, {&*tv, 0}, tout, tdout, tlse, opt,
                              drb ? &*drb : nullptr);
    }
    return with_drb(py::make_tuple(d.get(dq), d.get(dk), d.get(dv)));
  }, py::arg("dout"), py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"), py::arg("lse"),
     py::arg("num_heads") = 1, py::arg("kv_lengths") = py::none(), py::arg("causal") = false,
     py::arg("causal_offset") = 0, py::arg("scale") = py::none(), py::arg("rel_bias") = py::none(),
     py::arg("rel_bias_origin") = 0, py::arg("device") = "cpu", py::arg("dtype") = "float32",
     "(dq, dk, dv) = attention_backward(dout, q, k, v, out, lse, num_heads, ...), from the\n"
     "forward's out and lse (attention_train); with k and v None, q is fused and one dqkv\n"
     "comes back. With rel_bias, its float32 gradient drel_bias comes last.\n"
     "Example: dq, dk, dv = ops.attention_backward(g, q, k, v, out, lse, 4)");
}

}  // namespace tformer::bindings
