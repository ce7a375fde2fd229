// Encoder and decoder layers (Vaswani et al. 2017, section 3.1), post-norm as in the
// paper and Marian/BART, or pre-norm as in mBART/M2M100 (Wang et al. 2019); T5's switches
// (RMSNorm, no biases, gated FFN, head_dim, relative position bias) are config fields.
#include "layers.h"

#include "tformer/ops.h"

namespace tformer::layers {

Tensor view3(const Tensor& buffer, int64_t batch, int64_t len, int64_t cols) {
  return buffer.reshape({buffer.numel()}).slice(0, batch * len * cols).reshape({batch, len, cols});
}

void norm(Tensor& out, const Tensor& x, const Tensor* bias, const Tensor* residual, const LayerNorm& n,
          const TransformerConfig& cfg) {
  if (cfg.rms_norm) ops::rms_norm(out, nullptr, x, bias, residual, n.gamma, cfg.layer_norm_eps);
  else ops::layer_norm(out, nullptr, x, bias, residual, n.gamma, n.beta, cfg.layer_norm_eps);
}

void linear(Tensor& out, const Tensor& x, const Linear& l) {
  if (l.int8()) ops::int8_linear(out, x, l.weight, l.weight_scale, l.bias_or_null());
  else ops::linear(out, x, l.weight, l.bias_or_null());
}

const Tensor* linear_deferring_bias(Tensor& out, const Tensor& x, const Linear& l) {
  if (l.int8()) {
    ops::int8_linear(out, x, l.weight, l.weight_scale, l.bias_or_null());
    return nullptr;
  }
  ops::linear(out, x, l.weight);
  return l.bias_or_null();
}

void project_logits(Tensor& logits, const Tensor& x, const Linear& head, const Tensor* bias,
                    const TransformerConfig& cfg) {
  if (head.int8()) {
    ops::int8_linear(logits, x, head.weight, head.weight_scale, bias, cfg.logits_scale);
    return;
  }
  const int64_t rows = x.numel() / x.dim(-1);
  Tensor x2 = x.reshape({rows, x.dim(-1)});
  Tensor o2 = logits.reshape({rows, head.weight.dim(0)});
  ops::gemm(o2, x2, head.weight, false, true, cfg.logits_scale);
  if (bias) ops::bias_act(o2, o2, bias, nullptr, Activation::none);
}

const Tensor& sublayer_input(const Tensor& x, const LayerNorm& n, const TransformerConfig& cfg, Tensor& normed) {
  if (!cfg.pre_norm) return x;
  norm(normed, x, nullptr, nullptr, n, cfg);
  return normed;
}

void sublayer_output(Tensor& x, const Tensor& proj, const Tensor* bias, const LayerNorm& n,
                     const TransformerConfig& cfg) {
  if (cfg.pre_norm) ops::bias_act(x, proj, bias, &x, Activation::none);
  else norm(x, proj, bias, &x, n, cfg);
}

void embed(Tensor& x, const Tensor& ids, const Tensor& position_ids, const Embedding& w, const LayerNorm& n,
           const TransformerConfig& cfg) {
  if (cfg.position_table)
    ops::embedding(x, ids, w.table, cfg.embed_scale, &position_ids, &w.positions, w.table_scale_or_null());
  else ops::embedding(x, ids, w.table, cfg.embed_scale, nullptr, nullptr, w.table_scale_or_null());
  if (cfg.embed_norm) norm(x, x, nullptr, nullptr, n, cfg);
}

void final_norm(Tensor& x, const LayerNorm& n, bool present, const TransformerConfig& cfg) {
  if (present) norm(x, x, nullptr, nullptr, n, cfg);
}

namespace {

void self_attention(Tensor& x, const AttentionWeights& w, int64_t heads, bool causal, const TransformerConfig& cfg,
                    const Tensor& lengths, const RelativeBias& rel, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2), A = cfg.attention_width(heads);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor qkv = view3(ws.qkv, B, T, 3 * A);
  Tensor attn = view3(ws.attn, B, T, A);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.norm, cfg, normed);
  linear(qkv, in, w.qkv);
  ops::AttentionOptions opt;
  opt.heads = heads;
  opt.kv_lengths = &lengths;
  opt.causal = causal;
  opt.scale = cfg.attention_scale;
  opt.rel_bias = rel.get();
  opt.rel_bias_origin = rel.origin;
  ops::attention(attn, {&qkv, 0}, {&qkv, A}, {&qkv, 2 * A}, opt);
  const Tensor* out_bias = linear_deferring_bias(proj, attn, w.out);
  sublayer_output(x, proj, out_bias, w.norm, cfg);
}

void cross_attention(Tensor& x, const AttentionWeights& w, const TransformerConfig& cfg, const Tensor& memory,
                     const Tensor& src_lengths, Tensor& memory_kv, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2), A = cfg.attention_width(cfg.decoder_heads);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor q = view3(ws.qkv, B, T, A);
  Tensor attn = view3(ws.attn, B, T, A);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.norm, cfg, normed);
  linear(q, in, w.q);
  linear(memory_kv, memory, w.kv);
  ops::AttentionOptions opt;
  opt.heads = cfg.decoder_heads;
  opt.kv_lengths = &src_lengths;
  opt.scale = cfg.attention_scale;
  ops::attention(attn, {&q, 0}, {&memory_kv, 0}, {&memory_kv, A}, opt);
  const Tensor* out_bias = linear_deferring_bias(proj, attn, w.out);
  sublayer_output(x, proj, out_bias, w.norm, cfg);
}

}  // namespace

void feed_forward(Tensor& x, const FeedForwardWeights& w, const TransformerConfig& cfg, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2), F = w.fc2.weight.dim(1);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor hidden = view3(ws.hidden, B, T, F);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.norm, cfg, normed);
  if (cfg.gated_ffn) {
    Tensor gate = view3(ws.gate, B, T, 2 * F);
    linear(gate, in, w.fc1);
    ops::gated_act(hidden, gate, cfg.activation);
  } else {
    const Tensor* fc1_bias = linear_deferring_bias(hidden, in, w.fc1);
    ops::bias_act(hidden, hidden, fc1_bias, nullptr, cfg.activation);
  }
  const Tensor* fc2_bias = linear_deferring_bias(proj, hidden, w.fc2);
  sublayer_output(x, proj, fc2_bias, w.norm, cfg);
}

Workspace make_workspace(int64_t batch, int64_t len, const TransformerConfig& cfg, bool decoder, DType dtype,
                         Device device) {
  const int64_t rows = batch * len, D = cfg.d_model;
  const int64_t A = cfg.attention_width(decoder ? cfg.decoder_heads : cfg.encoder_heads);
  const int64_t F = decoder ? cfg.decoder_ffn_dim : cfg.encoder_ffn_dim;
  Workspace ws;
  ws.qkv = Tensor::empty({rows * 3 * A}, dtype, device);
  ws.attn = Tensor::empty({rows * A}, dtype, device);
  ws.proj = Tensor::empty({rows * D}, dtype, device);
  ws.normed = Tensor::empty({rows * D}, dtype, device);
  ws.hidden = Tensor::empty({rows * F}, dtype, device);
  if (cfg.gated_ffn) ws.gate = Tensor::empty({rows * 2 * F}, dtype, device);
  return ws;
}

void encoder_layer_forward(Tensor& x, const EncoderLayerWeights& w, const TransformerConfig& cfg,
                           const Tensor& lengths, const RelativeBias& rel, Workspace& ws) {
  self_attention(x, w.self_attn, cfg.encoder_heads, false, cfg, lengths, rel, ws);
  feed_forward(x, w.ffn, cfg, ws);
}

void decoder_layer_forward(Tensor& x, const DecoderLayerWeights& w, const TransformerConfig& cfg,
                           const Tensor& tgt_lengths, const RelativeBias& rel, const Tensor& memory,
                           const Tensor& src_lengths, Tensor& memory_kv, Workspace& ws) {
  self_attention(x, w.self_attn, cfg.decoder_heads, true, cfg, tgt_lengths, rel, ws);
  cross_attention(x, w.cross_attn, cfg, memory, src_lengths, memory_kv, ws);
  feed_forward(x, w.ffn, cfg, ws);
}

}  // namespace tformer::layers
