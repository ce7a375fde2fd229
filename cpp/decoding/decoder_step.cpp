#include "decoder_step.h"

#include "tformer/errors.h"
#include "tformer/ops.h"
#include "tformer/relative_position.h"

namespace tformer::decoding {
namespace {

// The first elements of a buffer as a tensor of `shape` (a view: no copy, no allocation of
// tensor memory).
Tensor prefix(const Tensor& buffer, const Shape& shape) {
  return buffer.reshape({buffer.numel()}).slice(0, shape_numel(shape)).reshape(shape);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

DecoderStep::DecoderStep(const Transformer& model, KvPool& pool, int64_t max_rows, int64_t max_positions,
                         int64_t max_src_len, bool want_attention)
    : model_(model), cfg_(model.config()), w_(model.weights().decoder), lm_head_(model.weights().lm_head), pool_(pool),
      max_rows_(max_rows), want_attention_(want_attention) {
  const Device dev = model.device();
  const bool cpu = dev.is_cpu();
  const DType dt = model.compute_dtype();
  const int64_t bs = pool.block_size();
  max_self_blocks_ = ceil_div(max_positions, bs);
  max_cross_blocks_ = std::max<int64_t>(1, ceil_div(max_src_len, bs));
  if (cfg_.relative_attention_buckets > 0) {
    rel_span_ = max_self_blocks_ * bs;
    self_rel_bias_ = relative_bias(w_.relative_attention_bias, -(rel_span_ - 1), rel_span_, false, cfg_);
  }
  ws_ = layers::make_workspace(max_rows, 1, cfg_, true, dt, dev);
  x_ = Tensor::empty({max_rows, 1, cfg_.d_model}, dt, dev);
  auto host_and_device = [&](Tensor& host, Tensor& device, const Shape& shape) {
    host = Tensor::empty(shape, DType::i32);
    device = cpu ? host : Tensor::empty(shape, DType::i32, dev);
  };
  host_and_device(ids_host_, ids_, {max_rows});
  host_and_device(positions_host_, positions_, {max_rows});
  host_and_device(self_lengths_host_, self_lengths_, {max_rows});
  host_and_device(slots_host_, slots_, {max_rows});
  host_and_device(cross_lengths_host_, cross_lengths_, {max_rows});
  host_and_device(origins_host_, origins_, {max_rows});
  host_and_device(self_table_host_, self_table_, {max_rows * max_self_blocks_});
  host_and_device(cross_table_host_, cross_table_, {max_rows * max_cross_blocks_});
  const int64_t V = cfg_.tgt_vocab_size;
  logits_ = Tensor::empty({max_rows, V}, dt, dev);
  logits_host_ = cpu && dt == DType::f32 ? logits_ : Tensor::empty({max_rows, V}, DType::f32);
  if (dt != DType::f32) logits_f32_ = Tensor::empty({max_rows, V}, DType::f32, dev);
  // On the CPU the search adds the output bias in its first pass over a row (one pass less);
  // an int8 head adds it in its GEMM's epilogue.
  if (cfg_.final_logits_bias && logits_host_.raw() == logits_.raw() && !lm_head_.int8())
    pending_bias_ = lm_head_.bias.data<float>();
  if (want_attention_) {
    weights_dev_ = Tensor::zeros({max_rows * max_cross_blocks_ * bs}, DType::f32, dev);
    weights_host_ = cpu ? weights_dev_ : Tensor::zeros({max_rows * max_cross_blocks_ * bs}, DType::f32);
  }
}

void DecoderStep::fill_inputs(const Row* rows, int64_t n) {
  const int64_t bs = pool_.block_size();
  self_width_ = 1;
  cross_width_ = 1;
  for (int64_t r = 0; r < n; ++r) {
    self_width_ = std::max(self_width_, rows[r].step / bs + 1);
    cross_width_ = std::max(cross_width_, ceil_div(rows[r].cross_len, bs));
  }
  if (self_width_ > max_self_blocks_ || cross_width_ > max_cross_blocks_)
    throw_value_error("decode step: a row needs ", self_width_, " self-attention blocks and ", cross_width_,
                      " cross-attention blocks; this step was sized for ", max_self_blocks_, " and ", max_cross_blocks_);
  int32_t* ids = ids_host_.data<int32_t>();
  int32_t* pos = positions_host_.data<int32_t>();
  int32_t* lens = self_lengths_host_.data<int32_t>();
  int32_t* slots = slots_host_.data<int32_t>();
  int32_t* cross_lens = cross_lengths_host_.data<int32_t>();
  int32_t* origins = origins_host_.data<int32_t>();
  int32_t* self_table = self_table_host_.data<int32_t>();
  int32_t* cross_table = cross_table_host_.data<int32_t>();
  for (int64_t r = 0; r < n; ++r) {
    const Row& row = rows[r];
    const int64_t step = row.step;
    ids[r] = row.token;
    // Incremental positions as transformers computes them for one new token.
    if (cfg_.position_ids == PositionIds::arange) pos[r] = static_cast<int32_t>(step + cfg_.position_offset);
    else pos[r] = row.token == cfg_.pad_id ? cfg_.pad_id : static_cast<int32_t>(cfg_.pad_id + 1 + step);
    lens[r] = static_cast<int32_t>(step + 1);
    // Defence in depth (the searches only feed checked ids): keep a bad id from reading
    // outside the embedding or positions table.
    if (ids[r] < 0 || ids[r] >= cfg_.tgt_vocab_size)
      throw_value_error("decode step ", step, ": token id ", ids[r], " is outside the target vocabulary [0, ",
                        cfg_.tgt_vocab_size, ")");
    if (pos[r] < 0 || pos[r] >= cfg_.max_positions)
      throw_value_error("decode step ", step, ": position ", pos[r], " is outside the positions table [0, ",
                        cfg_.max_positions, ")");
    const std::vector<int32_t>& sb = *row.self_blocks;
    const int64_t used = step / bs + 1;
    for (int64_t j = 0; j < self_width_; ++j) self_table[r * self_width_ + j] = j < used ? sb[j] : -1;
    slots[r] = static_cast<int32_t>(sb[step / bs] * bs + step % bs);
    const std::vector<int32_t>& cb = *row.cross_blocks;
    const int64_t cused = ceil_div(row.cross_len, bs);
    for (int64_t j = 0; j < cross_width_; ++j) cross_table[r * cross_width_ + j] = j < cused ? cb[j] : -1;
    cross_lens[r] = row.cross_len;
    if (rel_span_ > 0) origins[r] = static_cast<int32_t>(rel_span_ - 1 - step);
  }
  ids_v_ = prefix(ids_, {n, 1});
  positions_v_ = prefix(positions_, {n, 1});
  self_lengths_v_ = prefix(self_lengths_, {n});
  slots_v_ = prefix(slots_, {n});
  cross_lengths_v_ = prefix(cross_lengths_, {n});
  origins_v_ = prefix(origins_, {n});
  self_table_v_ = prefix(self_table_, {n, self_width_});
  cross_table_v_ = prefix(cross_table_, {n, cross_width_});
  if (!model_.device().is_cpu()) {
    ids_v_.copy_from(prefix(ids_host_, {n, 1}));
    positions_v_.copy_from(prefix(positions_host_, {n, 1}));
    self_lengths_v_.copy_from(prefix(self_lengths_host_, {n}));
    slots_v_.copy_from(prefix(slots_host_, {n}));
    cross_lengths_v_.copy_from(prefix(cross_lengths_host_, {n}));
    if (rel_span_ > 0) origins_v_.copy_from(prefix(origins_host_, {n}));
    self_table_v_.copy_from(prefix(self_table_host_, {n, self_width_}));
    cross_table_v_.copy_from(prefix(cross_table_host_, {n, cross_width_}));
  }
}

float* DecoderStep::run(const Row* rows, int64_t n, bool attention) {
  if (n < 1 || n > max_rows_) throw_value_error("decode step: ", n, " rows, this step was sized for 1 to ", max_rows_);
  if (attention && !want_attention_) throw_value_error("decode step: alignments were not provided for");
  attention_now_ = attention;
  fill_inputs(rows, n);
  Tensor x = layers::view3(x_, n, 1, cfg_.d_model);
  layers::embed(x, ids_v_, positions_v_, w_.embed, w_.embed_norm, cfg_);
  for (int64_t i = 0; i < cfg_.decoder_layers; ++i) layer_step(i, n);
  layers::final_norm(x, w_.final_norm, cfg_.decoder_final_norm, cfg_);
  const int64_t V = cfg_.tgt_vocab_size;
  Tensor logits = prefix(logits_, {n, V});
  layers::project_logits(logits, x, lm_head_, pending_bias_ ? nullptr : lm_head_.bias_or_null(), cfg_);
  Tensor logits_host = prefix(logits_host_, {n, V});
  if (logits_host.raw() != logits.raw()) {
    if (logits.dtype() == DType::f32) {
      logits_host.copy_from(logits);
    } else {
      Tensor wide = prefix(logits_f32_, {n, V});
      wide.cast_from(logits);
      logits_host.copy_from(wide);
    }
  }
  if (attention_now_) {
    attention_stride_ = cross_width_ * pool_.block_size();
    if (weights_host_.raw() != weights_dev_.raw())
      prefix(weights_host_, {n, attention_stride_}).copy_from(prefix(weights_dev_, {n, attention_stride_}));
  }
  return logits_host_.data<float>();
}

void DecoderStep::layer_step(int64_t i, int64_t n) {
  const DecoderLayerWeights& w = w_.layers[static_cast<size_t>(i)];
  const AttentionWeights& self = w.self_attn;
  const AttentionWeights& cross = w.cross_attn;
  const int64_t D = cfg_.d_model, A = cfg_.attention_width(cfg_.decoder_heads), bs = pool_.block_size();
  Tensor x = layers::view3(x_, n, 1, D);
  Tensor normed = layers::view3(ws_.normed, n, 1, D);
  Tensor qkv = layers::view3(ws_.qkv, n, 1, 3 * A);
  Tensor q = layers::view3(ws_.qkv, n, 1, A);
  Tensor attn = layers::view3(ws_.attn, n, 1, A);
  Tensor proj = layers::view3(ws_.proj, n, 1, D);
  Tensor& pool = pool_.layer(i);

  // Masked self-attention: this step's K/V (columns A..3A of qkv) go to each row's slot, then
  // each row attends to its positions 0..step through its block table.
  const Tensor& in = layers::sublayer_input(x, self.norm, cfg_, normed);
  layers::linear(qkv, in, self.qkv);
  ops::scatter_rows(pool_.layer_rows(i), 0, slots_v_, qkv, A, 2 * A);
  ops::AttentionOptions self_opt;
  self_opt.heads = cfg_.decoder_heads;
  self_opt.kv_lengths = &self_lengths_v_;
  self_opt.scale = cfg_.attention_scale;
  self_opt.block_table = &self_table_v_;
  self_opt.block_size = bs;
  if (self_rel_bias_.defined()) {
    self_opt.rel_bias = &self_rel_bias_;
    self_opt.rel_bias_origins = &origins_v_;
  }
  ops::attention(attn, {&qkv, 0}, {&pool, 0}, {&pool, A}, self_opt);
  const Tensor* self_out_bias = layers::linear_deferring_bias(proj, attn, self.out);
  layers::sublayer_output(x, proj, self_out_bias, self.norm, cfg_);

  // Cross-attention over the row's source K/V, through its source's block table.
  const Tensor& in2 = layers::sublayer_input(x, cross.norm, cfg_, normed);
  layers::linear(q, in2, cross.q);
  ops::AttentionOptions cross_opt;
  cross_opt.heads = cfg_.decoder_heads;
  cross_opt.kv_lengths = &cross_lengths_v_;
  cross_opt.scale = cfg_.attention_scale;
  cross_opt.block_table = &cross_table_v_;
  cross_opt.block_size = bs;
  Tensor weights;
  if (attention_now_ && i == cfg_.decoder_layers - 1) {
    weights = prefix(weights_dev_, {n, 1, cross_width_ * bs});
    cross_opt.weights_out = &weights;
  }
  ops::attention(attn, {&q, 0}, {&pool, 0}, {&pool, A}, cross_opt);
  const Tensor* cross_out_bias = layers::linear_deferring_bias(proj, attn, cross.out);
  layers::sublayer_output(x, proj, cross_out_bias, cross.norm, cfg_);

  layers::feed_forward(x, w.ffn, cfg_, ws_);
}

void DecoderStep::write_cross_kv(const Tensor& memory, const std::vector<int32_t>& lengths,
                                 const std::vector<std::vector<int32_t>>& blocks) {
  const int64_t B = memory.dim(0), S = memory.dim(1), A = cfg_.attention_width(cfg_.decoder_heads);
  const int64_t bs = pool_.block_size();
  const Device dev = model_.device();
  // Each source's slots, in source order (admission time: allocating here is fine).
  std::vector<Tensor> slots;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = lengths[static_cast<size_t>(b)];
    Tensor host = Tensor::empty({std::max<int64_t>(len, 1)}, DType::i32);
    int32_t* s = host.data<int32_t>();
    for (int64_t p = 0; p < len; ++p) s[p] = static_cast<int32_t>(blocks[static_cast<size_t>(b)][p / bs] * bs + p % bs);
    slots.push_back(dev.is_cpu() ? host : host.to(dev));
  }
  Tensor kv = Tensor::empty({B, S, 2 * A}, memory.dtype(), dev);
  Tensor kv_rows = kv.reshape({B * S, 2 * A});
  for (int64_t i = 0; i < cfg_.decoder_layers; ++i) {
    layers::linear(kv, memory, w_.layers[static_cast<size_t>(i)].cross_attn.kv);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths[static_cast<size_t>(b)];
      if (len == 0) continue;
      Tensor src = kv_rows.slice(b * S, b * S + len);
      Tensor dst_rows = slots[static_cast<size_t>(b)].slice(0, len);
      ops::scatter_rows(pool_.layer_rows(i), 0, dst_rows, src, 0, 2 * A);
    }
  }
}

}  // namespace tformer::decoding
