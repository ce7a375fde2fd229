// Encoder and decoder layers for training: forward with saved activations, backward.
#include "train_layers.h"

#include "tformer/ops.h"
#include "tformer/train_ops.h"

namespace tformer::training {
namespace {

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

Tensor flat(const Tensor& t) { return t.reshape({t.numel() / t.dim(-1), t.dim(-1)}); }

// linear_backward on (B, T, C) tensors, seen as (rows, C).
void linear_grad(Tensor* dx, LinearGrad g, const Tensor& dy, const Tensor& x, const Tensor& weight,
                 bool accumulate_dx = false) {
  Tensor dx2 = dx ? flat(*dx) : Tensor();
  ops::linear_backward(dx ? &dx2 : nullptr, g.weight, g.bias, flat(dy), flat(x), weight, accumulate_dx);
}

Tensor rows_vector(const Tensor& x) {
  return Tensor::empty({x.numel() / x.dim(-1)}, DType::f32, x.device());
}

}  // namespace

void norm_train(Tensor& out, const Tensor& x, const Tensor* residual, const LayerNorm& norm,
                const TransformerConfig& cfg, NormActs& a) {
  a.s = like(x);
  a.rstd = rows_vector(x);
  if (cfg.rms_norm) {
    ops::rms_norm_train(out, a.s, x, nullptr, residual, norm.gamma, cfg.layer_norm_eps, a.rstd);
    return;
  }
  a.mean = rows_vector(x);
  ops::layer_norm_train(out, a.s, x, nullptr, residual, norm.gamma, norm.beta, cfg.layer_norm_eps, a.mean, a.rstd);
}

void norm_backward(Tensor& ds, LayerNorm& g, const Tensor& dout, const LayerNorm& norm, const TransformerConfig& cfg,
                   const NormActs& a, bool accumulate) {
  const NormGrad ng = grads_of(g);
  if (cfg.rms_norm) ops::rms_norm_backward(ds, ng.gamma, dout, a.s, a.rstd, norm.gamma, accumulate);
  else ops::layer_norm_backward(ds, ng.gamma, ng.beta, dout, a.s, a.mean, a.rstd, norm.gamma, accumulate);
}

namespace {

// The input of a sublayer: LayerNorm(x) in pre-norm models (statistics saved), else x.
Tensor sublayer_in(const Tensor& x, const LayerNorm& norm, const TransformerConfig& cfg, SublayerOut& o) {
  if (!cfg.pre_norm) return x;
  Tensor out = like(x);
  norm_train(out, x, nullptr, norm, cfg, o.norm);
  return out;
}

// x + dropout(y + bias), then LayerNorm in post-norm models. y is overwritten.
Tensor sublayer_out(const Tensor& x, Tensor& y, const Tensor* bias, const LayerNorm& norm,
                    const TransformerConfig& cfg, Dropout& drop, SublayerOut& o) {
  if (bias) ops::bias_act(y, y, bias, nullptr, Activation::none);
  o.drop_offset = drop.take(y.numel());
  if (drop.p > 0.0f) ops::dropout(y, y, drop.p, drop.seed, o.drop_offset);
  Tensor out = like(x);
  if (cfg.pre_norm) {
    ops::bias_act(out, y, nullptr, &x, Activation::none);
  } else {
    norm_train(out, y, &x, norm, cfg, o.norm);
  }
  return out;
}

// Backward of sublayer_out: returns dx (the residual path) and sets dy (the gradient of
// the projection output, before its bias); dbias += sum of dy.
Tensor sublayer_out_backward(const Tensor& dout, Tensor& dy, const LayerNorm& norm, LayerNorm& gnorm, Tensor* dbias,
                             const TransformerConfig& cfg, const Dropout& drop, const SublayerOut& o) {
  Tensor dx = like(dout);
  if (cfg.pre_norm) dx.copy_from(dout);
  else norm_backward(dx, gnorm, dout, norm, cfg, o.norm);
  dy = like(dout);
  if (drop.p > 0.0f) ops::dropout(dy, dx, drop.p, drop.seed, o.drop_offset);
  else dy.copy_from(dx);
  if (dbias) ops::sum_rows(*dbias, flat(dy));
  return dx;
}

// dx += gradient through the sublayer input (its pre-norm LayerNorm, or identity).
void sublayer_in_backward(Tensor& dx, const Tensor& d_in, const LayerNorm& norm, LayerNorm& gnorm,
                          const TransformerConfig& cfg, const SublayerOut& o) {
  if (cfg.pre_norm)
    norm_backward(dx, gnorm, d_in, norm, cfg, o.norm, true);
  else
    ops::bias_act(dx, d_in, nullptr, &dx, Activation::none);
}

ops::AttentionOptions attention_options(const BatchInfo& b) {
  ops::AttentionOptions opt;
  opt.heads = b.heads;
  opt.kv_lengths = b.lengths;
  opt.causal = b.causal;
  opt.scale = b.scale;
  opt.rel_bias = b.rel_bias;
  opt.rel_bias_origin = b.rel_bias_origin;
  return opt;
}

Tensor self_attention_train(const Tensor& x, const AttentionWeights& w, const TransformerConfig& cfg,
                            const BatchInfo& batch, Dropout& drop, AttentionActs& a) {
  const int64_t B = x.dim(0), T = x.dim(1), I = w.qkv.weight.dim(0) / 3;
  a.in = sublayer_in(x, w.norm, cfg, a.out);
  a.qkv = Tensor::empty({B, T, 3 * I}, x.dtype(), x.device());
  ops::linear(a.qkv, a.in, w.qkv.weight, w.qkv.bias_or_null());
  a.attn = Tensor::empty({B, T, I}, x.dtype(), x.device());
  a.lse = Tensor::empty({B, batch.heads, T}, DType::f32, x.device());
  ops::attention_train(a.attn, {&a.qkv, 0}, {&a.qkv, I}, {&a.qkv, 2 * I}, attention_options(batch), a.lse);
  Tensor y = like(x);
  ops::linear(y, a.attn, w.out.weight);
  return sublayer_out(x, y, w.out.bias_or_null(), w.norm, cfg, drop, a.out);
}

Tensor self_attention_backward(const Tensor& dout, const AttentionWeights& w, AttentionWeights& g,
                               const TransformerConfig& cfg, const BatchInfo& batch, const Dropout& drop,
                               const AttentionActs& a) {
  const int64_t I = a.attn.dim(2);
  const LinearGrad gout = grads_of(g.out);
  Tensor dy;
  Tensor dx = sublayer_out_backward(dout, dy, w.norm, g.norm, gout.bias, cfg, drop, a.out);
  Tensor dattn = like(a.attn);
  linear_grad(&dattn, {gout.weight, nullptr}, dy, a.attn, w.out.weight);
  Tensor dqkv = like(a.qkv);
  ops::attention_backward({&dqkv, 0}, {&dqkv, I}, {&dqkv, 2 * I}, {&a.qkv, 0}, {&a.qkv, I}, {&a.qkv, 2 * I}, a.attn,
                          dattn, a.lse, attention_options(batch), batch.drel_bias);
  Tensor din = like(dout);
  linear_grad(&din, grads_of(g.qkv), dqkv, a.in, w.qkv.weight);
  sublayer_in_backward(dx, din, w.norm, g.norm, cfg, a.out);
  return dx;
}

Tensor cross_attention_train(const Tensor& h, const Tensor& memory, const AttentionWeights& w,
                             const TransformerConfig& cfg, const BatchInfo& batch, Dropout& drop, AttentionActs& c) {
  // Queries from the decoder, keys and values from the encoder output.
  const int64_t B = h.dim(0), T = h.dim(1), I = w.q.weight.dim(0), S = memory.dim(1);
  c.in = sublayer_in(h, w.norm, cfg, c.out);
  c.qkv = Tensor::empty({B, T, I}, h.dtype(), h.device());
  ops::linear(c.qkv, c.in, w.q.weight, w.q.bias_or_null());
  c.kv = Tensor::empty({B, S, 2 * I}, h.dtype(), h.device());
  ops::linear(c.kv, memory, w.kv.weight, w.kv.bias_or_null());
  c.attn = like(c.qkv);
  c.lse = Tensor::empty({B, batch.heads, T}, DType::f32, h.device());
  ops::attention_train(c.attn, {&c.qkv, 0}, {&c.kv, 0}, {&c.kv, I}, attention_options(batch), c.lse);
  Tensor y = like(h);
  ops::linear(y, c.attn, w.out.weight);
  return sublayer_out(h, y, w.out.bias_or_null(), w.norm, cfg, drop, c.out);
}

// dmemory receives += the gradient through the K/V projection.
Tensor cross_attention_backward(const Tensor& dout, Tensor& dmemory, const Tensor& memory, const AttentionWeights& w,
                                AttentionWeights& g, const TransformerConfig& cfg, const BatchInfo& batch,
                                const Dropout& drop, const AttentionActs& c) {
  const int64_t I = c.attn.dim(2);
  const LinearGrad gout = grads_of(g.out);
  Tensor dyc;
  Tensor dh = sublayer_out_backward(dout, dyc, w.norm, g.norm, gout.bias, cfg, drop, c.out);
  Tensor dattn = like(c.attn);
  linear_grad(&dattn, {gout.weight, nullptr}, dyc, c.attn, w.out.weight);
  Tensor dq = like(c.qkv);
  Tensor dkv = like(c.kv);
  ops::attention_backward({&dq, 0}, {&dkv, 0}, {&dkv, I}, {&c.qkv, 0}, {&c.kv, 0}, {&c.kv, I}, c.attn, dattn, c.lse,
                          attention_options(batch));
  linear_grad(&dmemory, grads_of(g.kv), dkv, memory, w.kv.weight, true);
  Tensor din = like(dout);
  linear_grad(&din, grads_of(g.q), dq, c.in, w.q.weight);
  sublayer_in_backward(dh, din, w.norm, g.norm, cfg, c.out);
  return dh;
}

Tensor ffn_train(const Tensor& x, const FeedForwardWeights& w, const TransformerConfig& cfg, Dropout& drop,
                 FfnActs& f) {
  // F: fc2's input width; a gated fc1 is (2F, D), both halves in one product (gated_act).
  const int64_t B = x.dim(0), T = x.dim(1), F = w.fc2.weight.dim(1);
  f.in = sublayer_in(x, w.norm, cfg, f.out);
  f.z = Tensor::empty({B, T, w.fc1.weight.dim(0)}, x.dtype(), x.device());
  ops::linear(f.z, f.in, w.fc1.weight, w.fc1.bias_or_null());
  f.a = Tensor::empty({B, T, F}, x.dtype(), x.device());
  if (cfg.gated_ffn) ops::gated_act(f.a, f.z, cfg.activation);
  else ops::bias_act(f.a, f.z, nullptr, nullptr, cfg.activation);
  f.act_drop_offset = drop.take(f.a.numel());
  if (drop.activation > 0.0f) ops::dropout(f.a, f.a, drop.activation, drop.seed, f.act_drop_offset);
  Tensor y = like(x);
  ops::linear(y, f.a, w.fc2.weight);
  return sublayer_out(x, y, w.fc2.bias_or_null(), w.norm, cfg, drop, f.out);
}

Tensor ffn_backward(const Tensor& dout, const FeedForwardWeights& w, FeedForwardWeights& g,
                    const TransformerConfig& cfg, const Dropout& drop, const FfnActs& f) {
  const LinearGrad g2 = grads_of(g.fc2);
  Tensor dy;
  Tensor dx = sublayer_out_backward(dout, dy, w.norm, g.norm, g2.bias, cfg, drop, f.out);
  Tensor da = like(f.a);
  linear_grad(&da, {g2.weight, nullptr}, dy, f.a, w.fc2.weight);
  if (drop.activation > 0.0f) ops::dropout(da, da, drop.activation, drop.seed, f.act_drop_offset);
  Tensor dz = da;  // bias_act_backward may work in place
  if (cfg.gated_ffn) {
    dz = like(f.z);
    ops::gated_act_backward(dz, da, f.z, cfg.activation);
  } else {
    ops::bias_act_backward(da, da, f.z, cfg.activation);
  }
  Tensor din = like(dout);
  linear_grad(&din, grads_of(g.fc1), dz, f.in, w.fc1.weight);
  sublayer_in_backward(dx, din, w.norm, g.norm, cfg, f.out);
  return dx;
}

}  // namespace

Tensor encoder_layer_train(const Tensor& x, const EncoderLayerWeights& w, const TransformerConfig& cfg,
                           const BatchInfo& batch, Dropout& drop, EncoderLayerActs& acts) {
  Tensor h = self_attention_train(x, w.self_attn, cfg, batch, drop, acts.self);
  return ffn_train(h, w.ffn, cfg, drop, acts.ffn);
}

Tensor encoder_layer_backward(const Tensor& dy, const EncoderLayerWeights& w, EncoderLayerWeights& g,
                              const TransformerConfig& cfg, const BatchInfo& batch, const Dropout& drop,
                              const EncoderLayerActs& acts) {
  Tensor dh = ffn_backward(dy, w.ffn, g.ffn, cfg, drop, acts.ffn);
  return self_attention_backward(dh, w.self_attn, g.self_attn, cfg, batch, drop, acts.self);
}

Tensor decoder_layer_train(const Tensor& x, const Tensor& memory, const DecoderLayerWeights& w,
                           const TransformerConfig& cfg, const BatchInfo& self_batch, const BatchInfo& cross_batch,
                           Dropout& drop, DecoderLayerActs& acts) {
  Tensor h = self_attention_train(x, w.self_attn, cfg, self_batch, drop, acts.self);
  Tensor h2 = cross_attention_train(h, memory, w.cross_attn, cfg, cross_batch, drop, acts.cross);
  return ffn_train(h2, w.ffn, cfg, drop, acts.ffn);
}

Tensor decoder_layer_backward(const Tensor& dy, Tensor& dmemory, const Tensor& memory, const DecoderLayerWeights& w,
                              DecoderLayerWeights& g, const TransformerConfig& cfg, const BatchInfo& self_batch,
                              const BatchInfo& cross_batch, const Dropout& drop, const DecoderLayerActs& acts) {
  Tensor dh2 = ffn_backward(dy, w.ffn, g.ffn, cfg, drop, acts.ffn);
  Tensor dh = cross_attention_backward(dh2, dmemory, memory, w.cross_attn, g.cross_attn, cfg, cross_batch, drop,
                                       acts.cross);
  return self_attention_backward(dh, w.self_attn, g.self_attn, cfg, self_batch, drop, acts.self);
}

}  // namespace tformer::training
