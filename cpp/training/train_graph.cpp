#include "tformer/training.h"

#include <algorithm>
#include <cmath>

#include "tformer/backends.h"
#include "tformer/errors.h"
#include "tformer/ops.h"
#include "tformer/relative_position.h"
#include "train_layers.h"

namespace tformer::training {
namespace {

Tensor like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

// The relative position bias of one stack for one step (T5): the bucket of each relative
// distance -(L-1) .. L-1, the (span, heads) bias they select from the stack's table (read by
// every layer at origin + j - i), and its float32 gradient, which the layers add into.
struct RelBias {
  Tensor ids, bias, dbias;
  int64_t origin = 0;
};

RelBias rel_bias_train(const Tensor& table, int64_t len, bool bidirectional, const TransformerConfig& c,
                       bool backward) {
  RelBias r;
  const int64_t span = 2 * len - 1;
  r.origin = len - 1;
  Tensor ids_host = Tensor::empty({span}, DType::i32);
  relative_position_buckets(ids_host.data<int32_t>(), -(len - 1), span, bidirectional, c.relative_attention_buckets,
                            c.relative_attention_max_distance);
  r.ids = ids_host.to(table.device());
  r.bias = Tensor::empty({span, table.dim(1)}, table.dtype(), table.device());
  ops::embedding(r.bias, r.ids, table, 1.0f);
  if (backward) r.dbias = Tensor::zeros({span, table.dim(1)}, DType::f32, table.device());
  return r;
}

void with_rel_bias(BatchInfo& b, RelBias& r) {
  b.rel_bias = &r.bias;
  b.rel_bias_origin = r.origin;
  b.drel_bias = r.dbias.defined() ? &r.dbias : nullptr;
}

// The table's gradient: dtable[bucket of each distance] += dbias (an embedding's backward).
void rel_bias_backward(Tensor& dtable, const RelBias& r) {
  ops::embedding_backward(&dtable, nullptr, r.dbias, r.ids, nullptr, 1.0f, -1);
}

struct EmbedActs {
  NormActs norm;
  uint64_t drop_offset = 0;
};

Tensor embed_train(const Tensor& ids, const Tensor& pos_ids, const Embedding& embed, const LayerNorm& norm,
                   const TransformerConfig& cfg, Dropout& drop, EmbedActs& a) {
  Tensor x = Tensor::empty({ids.dim(0), ids.dim(1), cfg.d_model}, embed.table.dtype(), embed.table.device());
  if (cfg.position_table) ops::embedding(x, ids, embed.table, cfg.embed_scale, &pos_ids, &embed.positions);
  else ops::embedding(x, ids, embed.table, cfg.embed_scale);
  if (cfg.embed_norm) {
    Tensor out = like(x);
    norm_train(out, x, nullptr, norm, cfg, a.norm);
    x = out;
  }
  a.drop_offset = drop.take(x.numel());
  if (drop.p > 0.0f) ops::dropout(x, x, drop.p, drop.seed, a.drop_offset);
  return x;
}

void embed_backward(const Tensor& dx_in, const Tensor& ids, const Tensor& pos_ids, Embedding& grads,
                    const LayerNorm& norm, LayerNorm& norm_grads, const TransformerConfig& cfg, const Dropout& drop,
                    const EmbedActs& a) {
  Tensor dx = like(dx_in);
  if (drop.p > 0.0f) ops::dropout(dx, dx_in, drop.p, drop.seed, a.drop_offset);
  else dx.copy_from(dx_in);
  if (cfg.embed_norm) {
    Tensor ds = like(dx);
    norm_backward(ds, norm_grads, dx, norm, cfg, a.norm);
    dx = ds;
  }
  // nn.Embedding(padding_idx=pad): the pad row gets no gradient from lookups (config.padding_row).
  const int32_t skip = cfg.padding_row ? cfg.pad_id : -1;
  Tensor* dpositions = cfg.position_table ? grad_of(grads.positions) : nullptr;
  ops::embedding_backward(grad_of(grads.table), dpositions, dx, ids, dpositions ? &pos_ids : nullptr,
                          cfg.embed_scale, skip);
}

// Final norm of a stack (pre-norm models); T5 drops its output out.
struct FinalNormActs {
  NormActs norm;
  uint64_t drop_offset = 0;
};

Tensor final_norm_train(const Tensor& x, const LayerNorm& norm, const TransformerConfig& cfg, Dropout& drop,
                        FinalNormActs& a) {
  Tensor out = like(x);
  norm_train(out, x, nullptr, norm, cfg, a.norm);
  if (cfg.final_norm_dropout) {
    a.drop_offset = drop.take(out.numel());
    if (drop.p > 0.0f) ops::dropout(out, out, drop.p, drop.seed, a.drop_offset);
  }
  return out;
}

Tensor final_norm_backward(const Tensor& dy, const LayerNorm& norm, LayerNorm& grads, const TransformerConfig& cfg,
                           const Dropout& drop, const FinalNormActs& a) {
  Tensor dx = like(dy);
  if (cfg.final_norm_dropout && drop.p > 0.0f) {
    Tensor dmasked = like(dy);
    ops::dropout(dmasked, dy, drop.p, drop.seed, a.drop_offset);
    norm_backward(dx, grads, dmasked, norm, cfg, a.norm);
  } else {
    norm_backward(dx, grads, dy, norm, cfg, a.norm);
  }
  return dx;
}

}  // namespace

TrainGraph::TrainGraph(Transformer& model, const std::set<std::string>& frozen, int64_t bucket_bytes, DType compute)
    : model_(model), compute_(compute), aliases_(parameter_aliases(model.config())) {
  // Points the model's weights at the flat buffer (and may convert them): a writer.
  WeightsLock::Exclusive writing(model.weights_lock());
  if (model.dtype() == DType::i8)
    throw_value_error("int8 models are for inference: train in float32, then convert with model.to(dtype='int8')");
  if (!model.complete()) throw_value_error("the model has parameters not set: cannot train it");
  if (bucket_bytes < 0) throw_value_error("bucket_bytes must be >= 0, got ", bucket_bytes);
  if (!dtype_is_float(compute))
    throw_value_error("the compute dtype must be float32, float16 or bfloat16, got ", dtype_name(compute));
  if (compute != DType::f32 && !model.device().is_cuda())
    throw_value_error(dtype_name(compute), " (mixed-precision) training needs a CUDA device, the model is on ",
                      device_name(model.device()));
  if (model.dtype() != DType::f32 && model.dtype() != compute)
    throw_value_error("cannot train a ", dtype_name(model.dtype()), " model in ", dtype_name(compute),
                      ": give a float32 model (or one of the compute dtype, with fp16/bf16)");
  for (const std::string& name : model.parameter_names())
    if (!frozen.count(name)) trainable_.push_back(name);
  if (trainable_.empty()) throw_value_error("every parameter is frozen: nothing to train");
  const Device device = model.parameter(trainable_.front()).device();

  // The stage that finishes each gradient buffer: the last stage of any name writing into
  // it (a tied matrix: its own and its aliases').
  std::map<std::string, int> final_stage;
  ModelWeights scratch = sized_weights(model.config());
  visit_parameters(model.config(), scratch,
                   [&](const std::string& name, const Shape&, Tensor&, const ParameterPlace& place) {
                     if (!frozen.count(name)) final_stage[name] = stage_of(place);
                   });
  for (const ParameterAlias& alias : aliases_) {
    auto it = final_stage.find(alias.owner);
    if (it != final_stage.end()) it->second = std::max(it->second, stage_of(alias.place));
  }
  std::vector<std::string> order = trainable_;
  std::stable_sort(order.begin(), order.end(),
                   [&](const std::string& a, const std::string& b) { return final_stage[a] < final_stage[b]; });

  // Offsets rounded up to 16 floats (64 bytes): every view starts cache-line aligned.
  constexpr int64_t kAlign = 16;
  const int stages = num_stages();
  std::vector<int64_t> stage_end(static_cast<size_t>(stages), 0);
  int64_t total = 0;
  for (const std::string& name : order) {
    offsets_[name] = total;
    total += (shape_numel(model.parameter(name).shape()) + kAlign - 1) / kAlign * kAlign;
    stage_end[static_cast<size_t>(final_stage[name])] = total;
  }
  for (int s = 1; s < stages; ++s)
    stage_end[static_cast<size_t>(s)] = std::max(stage_end[static_cast<size_t>(s)], stage_end[static_cast<size_t>(s - 1)]);
  flat_grad_ = Tensor::zeros({total}, DType::f32, device);
  flat_m_ = Tensor::zeros({total}, DType::f32, device);
  flat_v_ = Tensor::zeros({total}, DType::f32, device);
  flat_param_ = Tensor::zeros({total}, compute, device);
  if (mixed()) flat_master_ = Tensor::zeros({total}, DType::f32, device);
  for (const std::string& name : trainable_) {
    const Shape shape = model.parameter(name).shape();
    const int64_t off = offsets_[name];
    auto view = [&](const Tensor& flat) { return flat.slice(off, off + shape_numel(shape)).reshape(shape); };
    grads_[name] = view(flat_grad_);
    m_[name] = view(flat_m_);
    v_[name] = view(flat_v_);
    params_[name] = view(flat_param_);
    if (mixed()) master_[name] = view(flat_master_);
    bound_.push_back({&model_.slot(name), &params_[name], mixed() ? &master_[name] : nullptr});
  }
  // The gradients as typed structs for run(), bound once (tied names share their owner's).
  grads_typed_ = sized_weights(model.config());
  visit_parameters(model.config(), grads_typed_,
                   [this](const std::string& name, const Shape&, Tensor& member, const ParameterPlace&) {
                     auto it = grads_.find(name);
                     if (it != grads_.end()) member = it->second;
                   });
  tie_weights(model.config(), grads_typed_);
  sync_parameters();  // every parameter: its value into the flat buffers, the model onto the views
  if (model_.dtype_ != compute) {  // f32 model, mixed precision: the frozen ones too
    for (auto& [name, slot] : model_.slots_)
      if (!params_.count(name)) *slot.member = slot.member->to_dtype(compute);
    tie_weights(model.config(), *model_.weights_);
    model_.dtype_ = compute;
  }

  // Buckets close at stage ends once they hold bucket_bytes (the last one at the end).
  stage_bucket_.assign(static_cast<size_t>(stages), -1);
  int64_t start = 0;
  for (int s = 0; s < stages; ++s) {
    const int64_t end = stage_end[static_cast<size_t>(s)];
    if (end > start && ((end - start) * 4 >= bucket_bytes || s == stages - 1)) {
      stage_bucket_[static_cast<size_t>(s)] = static_cast<int64_t>(buckets_.size());
      buckets_.push_back({start, end - start});
      start = end;
    }
  }
}

int TrainGraph::num_stages() const {
  const TransformerConfig& c = model_.config();
  return static_cast<int>(4 + c.decoder_layers + c.encoder_layers);
}

int TrainGraph::stage_of(const ParameterPlace& place) const {
  const TransformerConfig& c = model_.config();
  const int ld = static_cast<int>(c.decoder_layers), le = static_cast<int>(c.encoder_layers);
  const int layer = static_cast<int>(place.layer);
  using Part = ParameterPlace::Part;
  if (place.decoder) {
    switch (place.part) {
      case Part::output:
      case Part::final_norm: return 0;
      case Part::layer: return 1 + (ld - 1 - layer);
      case Part::embeddings: return 1 + ld;
    }
  }
  switch (place.part) {
    case Part::final_norm: return 2 + ld;
    case Part::layer: return 3 + ld + (le - 1 - layer);
    default: return 3 + ld + le;  // source embeddings: final only at the very end
  }
}

std::string TrainGraph::owner(const std::string& name) const {
  for (const ParameterAlias& alias : aliases_)
    if (alias.name == name) return alias.owner;
  return name;
}

void TrainGraph::stage_done(int stage, const BucketReady* on_ready) const {
  if (on_ready == nullptr || !*on_ready) return;
  const int64_t bucket = stage_bucket_[static_cast<size_t>(stage)];
  if (bucket < 0) return;
  const Device& d = flat_grad_.device();
  if (!d.is_cpu()) backend_for(d).synchronize(d.index);  // the collective reads what the kernels wrote
  (*on_ready)(bucket);
}

int64_t TrainGraph::grad_offset(const std::string& name) {
  grad(name);  // the error for frozen or unknown names
  return offsets_.at(owner(name));
}

Tensor& TrainGraph::grad(const std::string& name) {
  auto it = grads_.find(owner(name));
  if (it == grads_.end()) throw_value_error("no gradient for parameter '", name, "' (frozen or unknown)");
  return it->second;
}

bool TrainGraph::parameters_replaced() const {
  for (const Bound& b : bound_)
    if (b.held->raw() != b.view->raw()) return true;
  return false;
}

void TrainGraph::sync_parameters() {
  bool changed = false;
  for (const Bound& b : bound_) {
    Tensor& held = *b.held;
    if (held.raw() == b.view->raw()) continue;
    if (b.master) b.master->copy_from(held.dtype() == DType::f32 ? held : held.to_dtype(DType::f32));
    b.view->copy_from(held.dtype() == compute_ ? held : held.to_dtype(compute_));
    held = *b.view;
    changed = true;
  }
  if (changed) tie_weights(model_.config(), *model_.weights_);  // aliases follow their owner onto the view
}

Tensor& TrainGraph::master(const std::string& name) {
  if (!mixed()) throw_value_error("no master weights: this graph trains in float32 (the model's weights are the master)");
  auto it = master_.find(name);
  if (it == master_.end()) throw_value_error("no master weights for parameter '", name, "' (frozen or unknown)");
  return it->second;
}

Tensor& TrainGraph::moment(const std::string& name, int which) {
  auto& table = which == 0 ? m_ : v_;
  auto it = table.find(name);
  if (it == table.end()) throw_value_error("no optimizer state for parameter '", name, "'");
  return it->second;
}

void TrainGraph::zero_grad() { flat_grad_.fill_zero(); }

// One pass over the flat buffer (one device sync on a GPU, not one per parameter): every
// gradient once, and its alignment padding, which stays zero.
double TrainGraph::grad_norm() const { return std::sqrt(ops::sum_squares(flat_grad_)); }

void TrainGraph::adamw_step(const ops::AdamWOptions& opt, float grad_multiplier) {
  // Updates the weights in place: no forward or generate may be reading them meanwhile.
  WeightsLock::Exclusive writing(model_.weights_lock());
  sync_parameters();
  ops::AdamWOptions o = opt;
  o.grad_scale = grad_multiplier;
  // One launch over every parameter (weight decay is one setting for all of them).
  if (mixed()) ops::adamw(flat_master_, flat_grad_, flat_m_, flat_v_, o, &flat_param_);
  else ops::adamw(flat_param_, flat_grad_, flat_m_, flat_v_, o);
}

LossSum TrainGraph::run(const TokenBatch& src, const TokenBatch& tgt_in, const Tensor& labels, const StepOptions& opt,
                        float grad_scale, const BucketReady* on_ready) {
  // The forward and backward only read the weights: generate calls may run alongside (the
  // update, adamw_step, is the writer). A parameter replaced since the last step is taken
  // back into the flat buffer first, which writes, so under the exclusive lock, and only then.
  bool replaced;
  {
    WeightsLock::Shared reading(model_.weights_lock());
    replaced = parameters_replaced();
  }
  if (replaced) {
    WeightsLock::Exclusive writing(model_.weights_lock());
    sync_parameters();
  }
  WeightsLock::Shared reading(model_.weights_lock());
  const TransformerConfig& c = model_.config();
  const Transformer& m = model_;
  const ModelWeights& w = m.weights();
  ModelWeights& g = grads_typed_;
  const bool backward = grad_scale != 0.0f;

  const Transformer::DeviceBatch s = m.upload(src, c.src_vocab_size, "src_ids");
  const Transformer::DeviceBatch t = m.upload(tgt_in, c.tgt_vocab_size, "tgt_ids");
  if (s.batch != t.batch) throw_value_error("src_ids has ", s.batch, " sentences but tgt_ids has ", t.batch);
  if (labels.dtype() != DType::i32 || labels.shape() != Shape{t.batch, t.len})
    throw_value_error("labels must be int32 (", t.batch, ", ", t.len, "), got ", labels.describe());

  Dropout drop{opt.dropout, opt.activation_dropout, opt.seed, 0};
  BatchInfo enc_batch{&s.lengths, c.encoder_heads, false, c.attention_scale};
  BatchInfo self_batch{&t.lengths, c.decoder_heads, true, c.attention_scale};
  const BatchInfo cross_batch{&s.lengths, c.decoder_heads, false, c.attention_scale};
  // T5: each stack's self-attention bias, gathered once for all its layers.
  RelBias enc_rel, dec_rel;
  if (c.relative_attention_buckets > 0) {
    // (the layers compute no bias gradient for a frozen table)
    enc_rel = rel_bias_train(w.encoder.relative_attention_bias, s.len, true, c,
                             backward && g.encoder.relative_attention_bias.defined());
    dec_rel = rel_bias_train(w.decoder.relative_attention_bias, t.len, false, c,
                             backward && g.decoder.relative_attention_bias.defined());
    with_rel_bias(enc_batch, enc_rel);
    with_rel_bias(self_batch, dec_rel);
  }

  // ---- forward
  EmbedActs src_emb, tgt_emb;
  Tensor x = embed_train(s.ids, s.position_ids, w.encoder.embed, w.encoder.embed_norm, c, drop, src_emb);
  std::vector<EncoderLayerActs> enc_acts(static_cast<size_t>(c.encoder_layers));
  for (int64_t i = 0; i < c.encoder_layers; ++i)
    x = encoder_layer_train(x, w.encoder.layers[static_cast<size_t>(i)], c, enc_batch, drop,
                            enc_acts[static_cast<size_t>(i)]);
  FinalNormActs enc_final;
  if (c.encoder_final_norm) x = final_norm_train(x, w.encoder.final_norm, c, drop, enc_final);
  const Tensor memory = x;

  Tensor y = embed_train(t.ids, t.position_ids, w.decoder.embed, w.decoder.embed_norm, c, drop, tgt_emb);
  std::vector<DecoderLayerActs> dec_acts(static_cast<size_t>(c.decoder_layers));
  for (int64_t i = 0; i < c.decoder_layers; ++i)
    y = decoder_layer_train(y, memory, w.decoder.layers[static_cast<size_t>(i)], c, self_batch, cross_batch, drop,
                            dec_acts[static_cast<size_t>(i)]);
  FinalNormActs dec_final;
  if (c.decoder_final_norm) y = final_norm_train(y, w.decoder.final_norm, c, drop, dec_final);
  const int64_t rows = t.batch * t.len, V = c.tgt_vocab_size;
  Tensor hidden = y.reshape({rows, c.d_model});
  Tensor logits = Tensor::empty({rows, V}, y.dtype(), y.device());
  // logits = logits_scale * hidden @ out_proj^T (+ final_logits_bias); the scale is the GEMM's alpha.
  ops::gemm(logits, hidden, w.lm_head.weight, false, true, c.logits_scale);
  if (const Tensor* bias = w.lm_head.bias_or_null()) ops::bias_act(logits, logits, bias, nullptr, Activation::none);
  Tensor loss_rows = Tensor::empty({rows}, DType::f32, y.device());
  const Tensor labels_dev = labels.reshape({rows}).to(y.device());
  ops::cross_entropy(loss_rows, backward ? &logits : nullptr, logits, labels_dev, opt.label_smoothing,
                     opt.ignore_index, grad_scale);
  LossSum result;
  const Tensor loss_host = loss_rows.to(Device{});
  const int32_t* lab = labels.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r) {
    if (lab[r] == opt.ignore_index) continue;
    result.loss += loss_host.data<float>()[r];
    result.tokens += 1;
  }
  if (!backward) return result;

  // ---- backward (logits now hold d loss / d logits)
  Tensor dhidden = like(hidden);
  ops::gemm(dhidden, logits, w.lm_head.weight, false, false, c.logits_scale);  // dh = s dlogits @ W
  if (Tensor* dw = grad_of(g.lm_head.weight))
    ops::gemm(*dw, logits, hidden, true, false, c.logits_scale, 1.0f);  // dW += s dlogits^T @ h
  Tensor dy = dhidden.reshape(y.shape());
  if (c.decoder_final_norm)
    dy = final_norm_backward(dy, w.decoder.final_norm, g.decoder.final_norm, c, drop, dec_final);
  int stage = 0;
  stage_done(stage++, on_ready);
  Tensor dmemory = Tensor::zeros(memory.shape(), memory.dtype(), memory.device());
  for (int64_t i = c.decoder_layers - 1; i >= 0; --i) {
    const size_t l = static_cast<size_t>(i);
    dy = decoder_layer_backward(dy, dmemory, memory, w.decoder.layers[l], g.decoder.layers[l], c, self_batch,
                                cross_batch, drop, dec_acts[l]);
    stage_done(stage++, on_ready);
  }
  if (dec_rel.dbias.defined()) rel_bias_backward(g.decoder.relative_attention_bias, dec_rel);
  embed_backward(dy, t.ids, t.position_ids, g.decoder.embed, w.decoder.embed_norm, g.decoder.embed_norm, c, drop,
                 tgt_emb);
  stage_done(stage++, on_ready);

  Tensor dx = dmemory;
  if (c.encoder_final_norm)
    dx = final_norm_backward(dx, w.encoder.final_norm, g.encoder.final_norm, c, drop, enc_final);
  stage_done(stage++, on_ready);
  for (int64_t i = c.encoder_layers - 1; i >= 0; --i) {
    const size_t l = static_cast<size_t>(i);
    dx = encoder_layer_backward(dx, w.encoder.layers[l], g.encoder.layers[l], c, enc_batch, drop, enc_acts[l]);
    stage_done(stage++, on_ready);
  }
  if (enc_rel.dbias.defined()) rel_bias_backward(g.encoder.relative_attention_bias, enc_rel);
  embed_backward(dx, s.ids, s.position_ids, g.encoder.embed, w.encoder.embed_norm, g.encoder.embed_norm, c, drop,
                 src_emb);
  stage_done(stage++, on_ready);
  return result;
}

}  // namespace tformer::training
