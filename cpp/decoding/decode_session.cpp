#include "decode_session.h"

#include "tformer/relative_position.h"
#include "tformer/errors.h"
#include "tformer/ops.h"

namespace tformer {

DecodeSession::DecodeSession(const Transformer& model, const TokenBatch& src, int64_t beam, int64_t max_steps,
                             bool want_attention)
    : model_(model), cfg_(model.config()), w_(model.weights().decoder), lm_head_(model.weights().lm_head), beam_(beam), max_steps_(max_steps), want_attention_(want_attention) {
  const Device dev = model.device();
  const DType dt = model.compute_dtype();  // float32 activations in an int8 model
  const int64_t A = cfg_.attention_width(cfg_.decoder_heads);
  src_ = model.upload(src, cfg_.src_vocab_size, "src_ids");
  src_lengths_ = src.lengths;
  rows_ = src_.batch * beam_;
  const Tensor memory = model.encode_device(src_);

  for (const DecoderLayerWeights& layer : w_.layers) {
    Tensor kv = Tensor::empty({src_.batch, src_.len, 2 * A}, dt, dev);
    layers::linear(kv, memory, layer.cross_attn.kv);
    cross_kv_.push_back(kv);
    k_cache_.push_back(Tensor::empty({rows_, max_steps_, A}, dt, dev));
    v_cache_.push_back(Tensor::empty({rows_, max_steps_, A}, dt, dev));
  }
  // Relative positions -(max_steps-1) .. 0 once for the session: step s reads rows from
  // origin max_steps-1-s (key j of query s is relative position j - s).
  if (cfg_.relative_attention_buckets > 0)
    self_rel_bias_ = relative_bias(w_.relative_attention_bias, -(max_steps_ - 1), max_steps_, false, cfg_);
  ws_ = layers::make_workspace(rows_, 1, cfg_, true, dt, dev);
  x_ = Tensor::empty({rows_, 1, cfg_.d_model}, dt, dev);
  ids_host_ = Tensor::empty({rows_, 1}, DType::i32);
  positions_host_ = Tensor::empty({rows_, 1}, DType::i32);
  self_lengths_host_ = Tensor::empty({rows_}, DType::i32);
  ids_ = dev.is_cpu() ? ids_host_ : Tensor::empty({rows_, 1}, DType::i32, dev);
  positions_ = dev.is_cpu() ? positions_host_ : Tensor::empty({rows_, 1}, DType::i32, dev);
  self_lengths_ = dev.is_cpu() ? self_lengths_host_ : Tensor::empty({rows_}, DType::i32, dev);
  logits_ = Tensor::empty({rows_, cfg_.tgt_vocab_size}, dt, dev);
  logits_host_ = dev.is_cpu() && dt == DType::f32 ? logits_ : Tensor::empty({rows_, cfg_.tgt_vocab_size}, DType::f32);
  // Half-precision logits are widened on the device into a buffer made here, not per step.
  if (dt != DType::f32) logits_f32_ = Tensor::empty({rows_, cfg_.tgt_vocab_size}, DType::f32, dev);
  // (An int8 head adds the bias in its GEMM's epilogue, for free.)
  if (cfg_.final_logits_bias && logits_host_.raw() == logits_.raw() && !lm_head_.int8())
    pending_bias_ = lm_head_.bias.data<float>();
  if (want_attention_) {
    weights_dev_ = Tensor::zeros({rows_, 1, src_.len}, DType::f32, dev);
    weights_host_ = dev.is_cpu() ? weights_dev_ : Tensor::zeros({rows_, 1, src_.len}, DType::f32);
  }
}

float* DecodeSession::step(const int32_t* tokens, int64_t step) {
  if (step < 0 || step >= max_steps_)
    throw_value_error("decode step ", step, " outside [0, ", max_steps_, ")");
  int32_t* ids = ids_host_.data<int32_t>();
  int32_t* pos = positions_host_.data<int32_t>();
  int32_t* lens = self_lengths_host_.data<int32_t>();
  for (int64_t r = 0; r < rows_; ++r) {
    ids[r] = tokens[r];
    // Incremental positions as transformers computes them for one new token.
    if (cfg_.position_ids == PositionIds::arange) pos[r] = static_cast<int32_t>(step + cfg_.position_offset);
    else pos[r] = tokens[r] == cfg_.pad_id ? cfg_.pad_id : static_cast<int32_t>(cfg_.pad_id + 1 + step);
    lens[r] = static_cast<int32_t>(step + 1);
    // Defence in depth (generate's checks already cover every id the searches feed): two
    // compares per row keep a bad id from reading outside the embedding or positions table.
    if (ids[r] < 0 || ids[r] >= cfg_.tgt_vocab_size)
      throw_value_error("decode step ", step, ": token id ", ids[r], " is outside the target vocabulary [0, ",
                        cfg_.tgt_vocab_size, ")");
    if (pos[r] < 0 || pos[r] >= cfg_.max_positions)
      throw_value_error("decode step ", step, ": position ", pos[r], " is outside the positions table [0, ",
                        cfg_.max_positions, ")");
  }
  if (!model_.device().is_cpu()) {
    ids_.copy_from(ids_host_);
    positions_.copy_from(positions_host_);
    self_lengths_.copy_from(self_lengths_host_);
  }
  layers::embed(x_, ids_, positions_, w_.embed, w_.embed_norm, cfg_);
  for (int64_t i = 0; i < cfg_.decoder_layers; ++i) layer_step(i, step);
  layers::final_norm(x_, w_.final_norm, cfg_.decoder_final_norm, cfg_);
  layers::project_logits(logits_, x_, lm_head_, pending_bias_ ? nullptr : lm_head_.bias_or_null(), cfg_);
  if (logits_host_.raw() != logits_.raw()) {
    if (logits_.dtype() == DType::f32) {
      logits_host_.copy_from(logits_);
    } else {
      logits_f32_.cast_from(logits_);
      logits_host_.copy_from(logits_f32_);
    }
  }
  if (want_attention_ && weights_host_.raw() != weights_dev_.raw()) weights_host_.copy_from(weights_dev_);
  return logits_host_.data<float>();
}

void DecodeSession::layer_step(int64_t i, int64_t step) {
  const DecoderLayerWeights& w = w_.layers[static_cast<size_t>(i)];
  const AttentionWeights& self = w.self_attn;
  const AttentionWeights& cross = w.cross_attn;
  const int64_t D = cfg_.d_model, A = cfg_.attention_width(cfg_.decoder_heads);
  Tensor normed = layers::view3(ws_.normed, rows_, 1, D);
  Tensor qkv = layers::view3(ws_.qkv, rows_, 1, 3 * A);
  Tensor q = layers::view3(ws_.qkv, rows_, 1, A);
  Tensor attn = layers::view3(ws_.attn, rows_, 1, A);
  Tensor proj = layers::view3(ws_.proj, rows_, 1, D);
  Tensor& kc = k_cache_[static_cast<size_t>(i)];
  Tensor& vc = v_cache_[static_cast<size_t>(i)];

  // Masked self-attention over the cache: write this step's K/V at position `step`,
  // then attend to positions 0..step (self_lengths = step + 1).
  const Tensor& in = layers::sublayer_input(x_, self.norm, cfg_, normed);
  layers::linear(qkv, in, self.qkv);
  ops::copy_strided(kc, step * A, max_steps_ * A, qkv, A, 3 * A, rows_, A);
  ops::copy_strided(vc, step * A, max_steps_ * A, qkv, 2 * A, 3 * A, rows_, A);
  ops::AttentionOptions self_opt;
  self_opt.heads = cfg_.decoder_heads;
  self_opt.kv_lengths = &self_lengths_;
  self_opt.scale = cfg_.attention_scale;
  if (self_rel_bias_.defined()) {
    self_opt.rel_bias = &self_rel_bias_;
    self_opt.rel_bias_origin = max_steps_ - 1 - step;
    // What self_lengths already masks, said so that the op can bound the rows read.
    self_opt.causal = true;
    self_opt.causal_offset = step;
  }
  ops::attention(attn, {&qkv, 0}, {&kc, 0}, {&vc, 0}, self_opt);
  const Tensor* self_out_bias = layers::linear_deferring_bias(proj, attn, self.out);
  layers::sublayer_output(x_, proj, self_out_bias, self.norm, cfg_);

  // Cross-attention: the beams of a source share its encoder K/V (kv_group = beam).
  const Tensor& in2 = layers::sublayer_input(x_, cross.norm, cfg_, normed);
  layers::linear(q, in2, cross.q);
  const Tensor& kv = cross_kv_[static_cast<size_t>(i)];
  ops::AttentionOptions cross_opt;
  cross_opt.heads = cfg_.decoder_heads;
  cross_opt.kv_lengths = &src_.lengths;
  cross_opt.kv_group = beam_;
  cross_opt.scale = cfg_.attention_scale;
  if (want_attention_ && i == cfg_.decoder_layers - 1) cross_opt.weights_out = &weights_dev_;
  ops::attention(attn, {&q, 0}, {&kv, 0}, {&kv, A}, cross_opt);
  const Tensor* cross_out_bias = layers::linear_deferring_bias(proj, attn, cross.out);
  layers::sublayer_output(x_, proj, cross_out_bias, cross.norm, cfg_);

  layers::feed_forward(x_, w.ffn, cfg_, ws_);
}

void DecodeSession::finish_row(float* row) const {
  if (!pending_bias_) return;
  const float* bias = pending_bias_;
  const int64_t V = vocab();
#pragma omp simd
  for (int64_t v = 0; v < V; ++v) row[v] += bias[v];  // as bias_act: x + bias, in float
}

const float* DecodeSession::attention() const {
  if (!want_attention_) throw_runtime_error("attention weights were not requested for this decoding session");
  return weights_host_.data<float>();
}

void DecodeSession::reorder(const std::vector<int32_t>& parents, int64_t step) {
  const int64_t cols = (step + 1) * cfg_.attention_width(cfg_.decoder_heads);
  for (size_t i = 0; i < k_cache_.size(); ++i) {
    ops::gather_rows(k_cache_[i], parents, cols);
    ops::gather_rows(v_cache_[i], parents, cols);
  }
}

}  // namespace tformer
