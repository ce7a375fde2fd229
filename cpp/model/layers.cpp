// Encoder and decoder layers (Vaswani et al. 2017, section 3.1), post-norm as in the
// paper and Marian/BART, or pre-norm as in mBART/M2M100 (Wang et al. 2019).
#include "layers.h"

#include "tformer/ops.h"

namespace tformer::layers {

Tensor view3(const Tensor& buffer, int64_t batch, int64_t len, int64_t cols) {
  return buffer.reshape({buffer.numel()}).slice(0, batch * len * cols).reshape({batch, len, cols});
}

const Tensor& sublayer_input(const Tensor& x, const Norm& norm, const TransformerConfig& cfg, Tensor& normed) {
  if (!cfg.pre_norm) return x;
  ops::layer_norm(normed, nullptr, x, nullptr, nullptr, *norm.gamma, *norm.beta, cfg.layer_norm_eps);
  return normed;
}

void sublayer_output(Tensor& x, const Tensor& proj, const Tensor* bias, const Norm& norm,
                     const TransformerConfig& cfg) {
  if (cfg.pre_norm) ops::bias_act(x, proj, bias, &x, Activation::none);
  else ops::layer_norm(x, nullptr, proj, bias, &x, *norm.gamma, *norm.beta, cfg.layer_norm_eps);
}

namespace {

void self_attention(Tensor& x, const Linear& qkv_w, const Linear& out_w, const Norm& norm, int64_t heads,
                    bool causal, const TransformerConfig& cfg, const Tensor& lengths, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor qkv = view3(ws.qkv, B, T, 3 * D);
  Tensor attn = view3(ws.attn, B, T, D);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, norm, cfg, normed);
  ops::linear(qkv, in, *qkv_w.weight, qkv_w.bias);
  ops::AttentionOptions opt;
  opt.heads = heads;
  opt.kv_lengths = &lengths;
  opt.causal = causal;
  ops::attention(attn, {&qkv, 0}, {&qkv, D}, {&qkv, 2 * D}, opt);
  ops::linear(proj, attn, *out_w.weight);
  sublayer_output(x, proj, out_w.bias, norm, cfg);
}

void cross_attention(Tensor& x, const DecoderLayer& w, const TransformerConfig& cfg, const Tensor& memory,
                     const Tensor& src_lengths, Tensor& memory_kv, Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor q = view3(ws.qkv, B, T, D);
  Tensor attn = view3(ws.attn, B, T, D);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, w.cross_attn_norm, cfg, normed);
  ops::linear(q, in, *w.cross_q.weight, w.cross_q.bias);
  ops::linear(memory_kv, memory, *w.cross_kv.weight, w.cross_kv.bias);
  ops::AttentionOptions opt;
  opt.heads = cfg.decoder_heads;
  opt.kv_lengths = &src_lengths;
  ops::attention(attn, {&q, 0}, {&memory_kv, 0}, {&memory_kv, D}, opt);
  ops::linear(proj, attn, *w.cross_out.weight);
  sublayer_output(x, proj, w.cross_out.bias, w.cross_attn_norm, cfg);
}

}  // namespace

void feed_forward(Tensor& x, const Linear& fc1, const Linear& fc2, const Norm& norm, const TransformerConfig& cfg,
                  Workspace& ws) {
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2), F = fc1.weight->dim(0);
  Tensor normed = view3(ws.normed, B, T, D);
  Tensor hidden = view3(ws.hidden, B, T, F);
  Tensor proj = view3(ws.proj, B, T, D);
  const Tensor& in = sublayer_input(x, norm, cfg, normed);
  ops::linear(hidden, in, *fc1.weight);
  ops::bias_act(hidden, hidden, fc1.bias, nullptr, cfg.activation);
  ops::linear(proj, hidden, *fc2.weight);
  sublayer_output(x, proj, fc2.bias, norm, cfg);
}

EncoderLayer encoder_layer(const ParamLookup& param, int64_t i) {
  const std::string l = "encoder.layers." + std::to_string(i);
  auto lin = [&](const std::string& n) { return Linear{&param(l + n + ".weight"), &param(l + n + ".bias")}; };
  auto norm = [&](const std::string& n) { return Norm{&param(l + n + ".gamma"), &param(l + n + ".beta")}; };
  EncoderLayer w;
  w.qkv = lin(".self_attn.qkv");
  w.self_out = lin(".self_attn.out");
  w.self_attn_norm = norm(".self_attn_norm");
  w.fc1 = lin(".ffn.fc1");
  w.fc2 = lin(".ffn.fc2");
  w.ffn_norm = norm(".ffn_norm");
  return w;
}

DecoderLayer decoder_layer(const ParamLookup& param, int64_t i) {
  const std::string l = "decoder.layers." + std::to_string(i);
  auto lin = [&](const std::string& n) { return Linear{&param(l + n + ".weight"), &param(l + n + ".bias")}; };
  auto norm = [&](const std::string& n) { return Norm{&param(l + n + ".gamma"), &param(l + n + ".beta")}; };
  DecoderLayer w;
  w.qkv = lin(".self_attn.qkv");
  w.self_out = lin(".self_attn.out");
  w.self_attn_norm = norm(".self_attn_norm");
  w.cross_q = lin(".cross_attn.q");
  w.cross_kv = lin(".cross_attn.kv");
  w.cross_out = lin(".cross_attn.out");
  w.cross_attn_norm = norm(".cross_attn_norm");
  w.fc1 = lin(".ffn.fc1");
  w.fc2 = lin(".ffn.fc2");
  w.ffn_norm = norm(".ffn_norm");
  return w;
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

void encoder_layer_forward(Tensor& x, const EncoderLayer& w, const TransformerConfig& cfg, const Tensor& lengths,
                           Workspace& ws) {
  self_attention(x, w.qkv, w.self_out, w.self_attn_norm, cfg.encoder_heads, false, cfg, lengths, ws);
  feed_forward(x, w.fc1, w.fc2, w.ffn_norm, cfg, ws);
}

void decoder_layer_forward(Tensor& x, const DecoderLayer& w, const TransformerConfig& cfg, const Tensor& tgt_lengths,
                           const Tensor& memory, const Tensor& src_lengths, Tensor& memory_kv, Workspace& ws) {
  self_attention(x, w.qkv, w.self_out, w.self_attn_norm, cfg.decoder_heads, true, cfg, tgt_lengths, ws);
  cross_attention(x, w, cfg, memory, src_lengths, memory_kv, ws);
  feed_forward(x, w.fc1, w.fc2, w.ffn_norm, cfg, ws);
}

}  // namespace tformer::layers
