// The whole model: typed weights bound to their names, embeddings, the encoder and
// decoder stacks, and the projection to the vocabulary.
#include <algorithm>
#include <cmath>

#include "layers.h"
#include "tformer/relative_position.h"
#include "tformer/backends.h"
#include "tformer/errors.h"
#include "tformer/model.h"
#include "tformer/ops.h"
#include "tformer/ops/int8.h"

namespace tformer {

Transformer::Transformer(TransformerConfig config, Device device, DType dtype)
    : config_(std::move(config)), device_(device), dtype_(dtype) {
  config_.validate();
  if (dtype_ == DType::i8) {
    if (!device_.is_cpu())
      throw_value_error("int8 runs on the CPU only; on ", device_name(device_),
                        " use float32, float16 or bfloat16");
  } else if (!dtype_is_float(dtype_)) {
    throw_value_error("model dtype must be float32, float16 or bfloat16 (or int8 on the CPU), got ",
                      dtype_name(dtype_));
  }
  if (device_.is_cpu() && dtype_ != DType::f32 && dtype_ != DType::i8)
    throw_value_error("dtype ", dtype_name(dtype_), " is not supported on cpu: the CPU backend computes in float32 ",
                      "(this CPU has no fast half-precision arithmetic); use dtype='float32' or 'int8', or device='cuda'");
  check_device(device_);
  weights_ = std::make_unique<ModelWeights>(sized_weights(config_));
  // An int8 model keeps the matrices visit_parameters marks (int8_scale) as int8 + scales.
  const bool int8 = dtype_ == DType::i8;
  visit_parameters(config_, *weights_,
                   [this, int8](const std::string& name, const Shape& shape, Tensor& member, const ParameterPlace& at) {
                     slots_[name] = Slot{shape, &member, int8 ? at.int8_scale : nullptr};
                   });
  aliases_ = parameter_aliases(config_);
}

Tensor& Transformer::slot(const std::string& name) const { return *slots_.at(name).member; }

Tensor Transformer::checked_copy(const std::string& name, const Tensor& value) const {
  check_value(name, value);
  // Always a copy: the model must not alias a caller's (numpy) buffer.
  Tensor owned = Tensor::empty(value.shape(), value.dtype(), device_);
  owned.copy_from(value);
  return owned;
}

void Transformer::check_value(const std::string& name, const Tensor& value) const {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw_value_error("unknown parameter '", name, "' for this config");
  if (value.shape() != it->second.shape)
    throw_value_error("parameter '", name, "': expected shape ", shape_str(it->second.shape), ", got ",
                      shape_str(value.shape()));
  if (!dtype_is_float(value.dtype()))
    throw_type_error("parameter '", name, "': expected a float tensor, got ", dtype_name(value.dtype()));
  if (value.device().is_cpu() && value.dtype() == DType::f32) {
    // NaN/Inf weights would only surface as garbage output: refuse them here.
    const float* v = value.data<float>();
    const int64_t n = value.numel();
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(v[i]))
        throw_value_error("parameter '", name, "' contains ", std::isnan(v[i]) ? "NaN" : "Inf", " at flat index ", i);
  }
}

void Transformer::set_parameter(const std::string& name, const Tensor& value) { set_parameters({{name, value}}); }

void Transformer::set_parameters(const std::vector<std::pair<std::string, Tensor>>& values) {
  // Checks and copies before the lock: readers wait only for the swap.
  // An int8 model's matrices are quantized here (owned: q, scales: their scales).
  std::vector<Tensor> owned, scales(values.size());
  owned.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const auto& [name, value] = values[i];
    if (slots_.count(name) && slots_.at(name).scale) {
      check_value(name, value);
      owned.push_back(quantized(value, scales[i]));
    } else {
      owned.push_back(checked_copy(name, value));
    }
  }
  WeightsLock::Exclusive writing(*weights_lock_);
  // dtype_ is read under the lock: a mixed-precision TrainGraph changes it. The typed weights
  // are rebound (aliases included) under this same hold: no reader sees half of it.
  for (size_t i = 0; i < values.size(); ++i) {
    const Slot& s = slots_.at(values[i].first);
    if (s.scale) {
      *s.member = owned[i];
      *s.scale = scales[i];
    } else {
      *s.member = owned[i].to_dtype(compute_dtype());
    }
  }
  tie_weights(config_, *weights_);
}

const Tensor& Transformer::parameter(const std::string& name) const {
  // Aliases of shared matrices resolve to the one stored tensor.
  const Slot& s = resolved_slot(name);
  if (!s.member->defined()) throw_value_error("parameter '", name, "' has not been set");
  return *s.member;
}

Tensor Transformer::copy_parameter(const std::string& name) const {
  WeightsLock::Shared reading(*weights_lock_);
  const Tensor& p = parameter(name);
  Tensor host = Tensor::empty(p.shape(), DType::f32);
  if (p.dtype() == DType::i8) ops::dequantize_rows(host, p, *resolved_slot(name).scale);
  else if (p.dtype() == DType::f32) host.copy_from(p);
  else host.copy_from(p.to_dtype(DType::f32));
  return host;
}

std::vector<std::string> Transformer::parameter_names() const {
  std::vector<std::string> names;
  for (auto& [name, shape] : config_.parameter_shapes()) names.push_back(name);
  return names;
}

std::vector<std::string> Transformer::missing_parameters() const {
  WeightsLock::Shared reading(*weights_lock_);  // set_parameter may be inserting a name
  std::vector<std::string> missing;
  for (auto& [name, s] : slots_)
    if (!s.member->defined()) missing.push_back(name);
  return missing;
}

void Transformer::check_complete() const {
  const auto missing = missing_parameters();
  if (missing.empty()) return;
  throw_value_error("the model has ", missing.size(), " parameter(s) not set, first: '", missing.front(), "'");
}

Transformer Transformer::to(Device device) const { return to(device, dtype_); }

Transformer Transformer::to(Device device, DType dtype) const {
  Transformer copy(config_, device, dtype);
  WeightsLock::Shared reading(*weights_lock_);
  for (auto& [name, s] : slots_) {
    if (!s.member->defined()) continue;
    const Slot& to = copy.slots_.at(name);
    if (s.scale && to.scale) {  // int8 -> int8: the same values and scales
      *to.member = *s.member;
      *to.scale = *s.scale;
    } else if (to.scale) {  // float -> int8: quantized on the host
      *to.member = quantized(*s.member, *to.scale);
    } else if (s.scale) {  // int8 -> float: dequantized on the host
      Tensor host = Tensor::empty(s.member->shape(), DType::f32);
      ops::dequantize_rows(host, *s.member, *s.scale);
      *to.member = host.to(device).to_dtype(copy.compute_dtype());
    } else {
      *to.member = s.member->to(device).to_dtype(copy.compute_dtype());
    }
  }
  tie_weights(copy.config_, *copy.weights_);
  return copy;
}

Transformer::DeviceBatch Transformer::upload(const TokenBatch& b, int64_t vocab, const char* what) const {
  if (b.ids.dtype() != DType::i32 || b.ids.ndim() != 2)
    throw_type_error(what, ": expected int32 ids of shape (batch, length), got ", b.ids.describe());
  if (!b.ids.device().is_cpu()) throw_value_error(what, ": ids must be on the host");
  DeviceBatch d;
  d.batch = b.ids.dim(0);
  d.len = b.ids.dim(1);
  if (d.batch == 0) throw_value_error(what, ": empty batch");
  if (static_cast<int64_t>(b.lengths.size()) != d.batch)
    throw_value_error(what, ": ", b.lengths.size(), " lengths for a batch of ", d.batch);
  const int32_t* ids = b.ids.data<int32_t>();
  Tensor positions = Tensor::empty({d.batch, d.len}, DType::i32);
  int32_t* pos = positions.data<int32_t>();
  const int64_t max_pos = config_.max_positions;
  for (int64_t r = 0; r < d.batch; ++r) {
    const int32_t n = b.lengths[static_cast<size_t>(r)];
    if (n < 1) throw_value_error(what, ": sentence ", r, " is empty");
    if (n > d.len) throw_value_error(what, ": sentence ", r, " has length ", n, " > padded length ", d.len);
    int32_t count = 0;
    for (int64_t t = 0; t < d.len; ++t) {
      const int32_t id = ids[r * d.len + t];
      int64_t p = 0;
      if (t < n) {
        if (id < 0 || id >= vocab)
          throw_value_error(what, ": token id ", id, " at sentence ", r, ", position ", t,
                            " is outside the vocabulary [0, ", vocab, ")");
        if (config_.position_ids == PositionIds::arange) {
          p = t + config_.position_offset;
        } else {  // fairseq: pad tokens keep position pad_id, the others count up from pad_id + 1
          p = id == config_.pad_id ? config_.pad_id : config_.pad_id + (++count);
        }
        if (p < 0)  // unreachable with a validated config; never index before the table
          throw_value_error(what, ": sentence ", r, ", token ", t, " has position ", p, ", outside the positions table");
        if (p >= max_pos)
          throw_value_error(what, ": sentence ", r, " has ", n, " tokens, more than the positions table allows (",
                            max_pos - (config_.position_ids == PositionIds::arange ? config_.position_offset
                                                                                    : config_.pad_id + 1),
                            ")");
      }
      pos[r * d.len + t] = static_cast<int32_t>(p);  // padded positions: row 0, never read for output
    }
  }
  Tensor ids_host = b.ids;
  // Padded slots may hold any id: clamp them to 0 so the embedding lookup stays in range.
  bool padded = false;
  for (int32_t n : b.lengths) padded = padded || n < d.len;
  if (padded) {
    ids_host = Tensor::empty({d.batch, d.len}, DType::i32);
    int32_t* dst = ids_host.data<int32_t>();
    for (int64_t r = 0; r < d.batch; ++r)
      for (int64_t t = 0; t < d.len; ++t)
        dst[r * d.len + t] = t < b.lengths[static_cast<size_t>(r)] ? ids[r * d.len + t] : 0;
  }
  d.ids = ids_host.to(device_);
  d.position_ids = positions.to(device_);
  d.lengths = Tensor::from_host(b.lengths.data(), {d.batch}, DType::i32, device_);
  return d;
}

Tensor Transformer::encode_device(const DeviceBatch& src) const {
  const TransformerConfig& c = config_;
  const StackWeights<EncoderLayerWeights>& w = weights_->encoder;
  Tensor x = Tensor::empty({src.batch, src.len, c.d_model}, compute_dtype(), device_);
  layers::embed(x, src.ids, src.position_ids, w.embed, w.embed_norm, c);
  layers::Workspace ws = layers::make_workspace(src.batch, src.len, c, false, compute_dtype(), device_);
  // Relative positions -(S-1) .. S-1, computed once for all layers.
  layers::RelativeBias rel;
  if (c.relative_attention_buckets > 0) {
    rel.bias = relative_bias(w.relative_attention_bias, -(src.len - 1), 2 * src.len - 1, true, c);
    rel.origin = src.len - 1;
  }
  for (const EncoderLayerWeights& layer : w.layers) layers::encoder_layer_forward(x, layer, c, src.lengths, rel, ws);
  layers::final_norm(x, w.final_norm, c.encoder_final_norm, c);
  return x;
}

Tensor Transformer::decode_device(const DeviceBatch& tgt, const Tensor& memory, const DeviceBatch& src) const {
  const TransformerConfig& c = config_;
  const StackWeights<DecoderLayerWeights>& w = weights_->decoder;
  Tensor x = Tensor::empty({tgt.batch, tgt.len, c.d_model}, compute_dtype(), device_);
  layers::embed(x, tgt.ids, tgt.position_ids, w.embed, w.embed_norm, c);
  layers::Workspace ws = layers::make_workspace(tgt.batch, tgt.len, c, true, compute_dtype(), device_);
  Tensor memory_kv =
      Tensor::empty({src.batch, src.len, 2 * c.attention_width(c.decoder_heads)}, compute_dtype(), device_);
  // Relative positions -(T-1) .. T-1 (the causal mask hides the positive ones).
  layers::RelativeBias rel;
  if (c.relative_attention_buckets > 0) {
    rel.bias = relative_bias(w.relative_attention_bias, -(tgt.len - 1), 2 * tgt.len - 1, false, c);
    rel.origin = tgt.len - 1;
  }
  for (const DecoderLayerWeights& layer : w.layers)
    layers::decoder_layer_forward(x, layer, c, tgt.lengths, rel, memory, src.lengths, memory_kv, ws);
  layers::final_norm(x, w.final_norm, c.decoder_final_norm, c);
  return x;
}

Tensor Transformer::encode(const TokenBatch& src) const {
  WeightsLock::Shared reading(*weights_lock_);
  check_complete();
  return encode_device(upload(src, config_.src_vocab_size, "src_ids"));
}

Tensor Transformer::forward(const TokenBatch& src, const TokenBatch& tgt) const {
  WeightsLock::Shared reading(*weights_lock_);
  check_complete();
  if (src.ids.ndim() == 2 && tgt.ids.ndim() == 2 && src.ids.dim(0) != tgt.ids.dim(0))
    throw_value_error("src_ids has ", src.ids.dim(0), " sentences but tgt_ids has ", tgt.ids.dim(0),
                      ": the batches must have the same size");
  const DeviceBatch s = upload(src, config_.src_vocab_size, "src_ids");
  const DeviceBatch t = upload(tgt, config_.tgt_vocab_size, "tgt_ids");
  const Tensor memory = encode_device(s);
  const Tensor hidden = decode_device(t, memory, s);
  // Logits are produced directly in host memory when the model runs on the CPU.
  const int64_t V = config_.tgt_vocab_size;
  Tensor logits = Tensor::empty({t.batch, t.len, V}, compute_dtype(), device_);
  layers::project_logits(logits, hidden, weights_->lm_head, weights_->lm_head.bias_or_null(), config_);
  if (compute_dtype() != DType::f32) logits = logits.to_dtype(DType::f32);
  return logits.to(Device{});
}

std::vector<GenerationResult> Transformer::generate(const TokenBatch& src, const GenerationOptions& options) const {
  // One acquisition for the whole search: the decoder steps read the weights throughout.
  WeightsLock::Shared reading(*weights_lock_);
  return generate_holding_lock(src, options);
}

}  // namespace tformer
