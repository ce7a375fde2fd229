// Encoder and decoder layers (Vaswani et al. 2017, section 3.1), post-norm as in the
// paper and Marian/BART, or pre-norm as in mBART/M2M100 (Wang et al. 2019).
#include "layers.h"

#include "tformer/ops.h"

namespace tformer::layers {

Tensor view3(const Tensor& buffer, int64_t batch, int64_t len, int64_t cols) {
  return buffer.reshape({buffer.numel()}).slice(0, batch * len * cols).reshape({batch, len, cols});
}

const Tensor& sublayer_input(const Tensor& x, const LayerNorm& norm, const TransformerConfig& cfg, Tensor& normed) {
  if (!cfg.pre_norm) return x;
  ops::layer_norm(normed, nullptr, x, nullptr, nullptr, norm.gamma, norm.beta, cfg.layer_norm_eps);
  return normed;
}

void sublayer_output(Tensor& x, const Tensor& proj, const Tensor* bias, const LayerNorm& norm,
                     const TransformerConfig& cfg) {
  if (cfg.pre_norm) ops::bias_act(x, proj, bias, &x, Activation::none);
  else ops::layer_norm(x, nullptr, proj, bias, &x, norm.gamma, norm.beta, cfg.layer_norm_eps);
}

void embed(Tensor& x, const Tensor& ids, const Tensor& position_ids, const Embedding& w, const LayerNorm& norm,
           const TransformerConfig& cfg) {
  ops::embedding(x, ids, w.table, cfg.embed_scale, &position_ids, &w.positions);
  if (cfg.embed_norm) ops::layer_norm(x, nullptr, x, nullptr, nullptr, norm.gamma, norm.beta, cfg.layer_norm_eps);
}

void final_norm(Tensor& x, const LayerNorm& norm, bool present, const TransformerConfig& cfg) {
  if (present) ops::layer_norm(x, nullptr, x, nullptr, nullptr, norm.gamma, norm.beta, cfg.layer_norm_eps);
}

namespace {

void self_attention(Tensor& x, const AttentionWeights& w, int64_t heads, bool causal, const TransformerConfig& cfg,
                    const Tensor& lengths, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor qkv = view3(ws.qkv, B, T, 3 * D);
  Tensor attn = view3(ws.attn, B, T, D);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.norm, cfg, normed);
  ops::linear(qkv, in, w.qkv.weight, w.qkv.bias_or_null());
  ops::AttentionOptions opt;
  opt.heads = heads;
  opt.kv_lengths = &lengths;
  opt.causal = causal;
  ops::attention(attn, {&qkv, 0}, {&qkv, D}, {&qkv, 2 * D}, opt);
  ops::linear(proj, attn, w.out.weight);
  sublayer_output(x, proj, w.out.bias_or_null(), w.norm, cfg);
}

void cross_attention(Tensor& x, const AttentionWeights& w, const TransformerConfig& cfg, const Tensor& memory,
                     const Tensor& src_lengths, Tensor& memory_kv, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor q = view3(ws.qkv, B, T, D);
  Tensor attn = view3(ws.attn, B, T, D);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.norm, cfg, normed);
  ops::linear(q, in, w.q.weight, w.q.bias_or_null());
  ops::linear(memory_kv, memory, w.kv.weight, w.kv.bias_or_null());
  ops::AttentionOptions opt;
  opt.heads = cfg.decoder_heads;
  opt.kv_lengths = &src_lengths;
  ops::attention(attn, {&q, 0}, {&memory_kv, 0}, {&memory_kv, D}, opt);
  ops::linear(proj, attn, w.out.weight);
  sublayer_output(x, proj, w.out.bias_or_null(), w.norm, cfg);
}

}  // namespace

void feed_forward(Tensor& x, const FeedForwardWeights& w, const TransformerConfig& cfg, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2), F = w.fc1.weight.dim(0);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor hidden = view3(ws.hidden, B, T, F);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.norm, cfg, normed);
  ops::linear(hidden, in, w.fc1.weight);
  ops::bias_act(hidden, hidden, w.fc1.bias_or_null(), nullptr, cfg.activation);
  ops::linear(proj, hidden, w.fc2.weight);
  sublayer_output(x, proj, w.fc2.bias_or_null(), w.norm, cfg);
}

Workspace make_workspace(int64_t batch, int64_t len, int64_t d_model, int64_t ffn_dim, DType dtype, Device device) {
  const int64_t rows = batch * len;
  Workspace ws;
  ws.qkv = Tensor::empty({rows * 3 * d_model}, dtype, device);
  ws.attn = Tensor::empty({rows * d_model}, dtype, device);
  ws.proj = Tensor::empty({rows * d_model}, dtype, device);
  ws.normed = Tensor::empty({rows * d_model}, dtype, device);
  ws.hidden = Tensor::empty({rows * ffn_dim}, dtype, device);
  return ws;
}

void encoder_layer_forward(Tensor& x, const EncoderLayerWeights& w, const TransformerConfig& cfg,
                           const Tensor& lengths, Workspace& ws) {
  self_attention(x, w.self_attn, cfg.encoder_heads, false, cfg, lengths, ws);
  feed_forward(x, w.ffn, cfg, ws);
}

void decoder_layer_forward(Tensor& x, const DecoderLayerWeights& w, const TransformerConfig& cfg,
                           const Tensor& tgt_lengths, const Tensor& memory, const Tensor& src_lengths,
                           Tensor& memory_kv, Workspace& ws) {
  self_attention(x, w.self_attn, cfg.decoder_heads, true, cfg, tgt_lengths, ws);
  cross_attention(x, w.cross_attn, cfg, memory, src_lengths, memory_kv, ws);
  feed_forward(x, w.ffn, cfg, ws);
}

}  // namespace tformer::layers
