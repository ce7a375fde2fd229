// The parameter names of the model family, declared once: each name is paired with the
// member of ModelWeights it fills. parameter_shapes(), set_parameter/parameter by name,
// save/load, TrainGraph's gradients and the Python converters all go through this table.
#include "tformer/weights.h"

namespace tformer {

ModelWeights sized_weights(const TransformerConfig& c) {
  ModelWeights w;
  w.encoder.layers.resize(static_cast<size_t>(c.encoder_layers));
  w.decoder.layers.resize(static_cast<size_t>(c.decoder_layers));
  return w;
}

namespace {

using Part = ParameterPlace::Part;

ParameterPlace place(bool decoder, Part part, int64_t layer = -1) { return ParameterPlace{decoder, part, layer}; }

struct Visiting {
  const ParameterVisitor& visit;
  const TransformerConfig& c;
  int64_t d;
  ParameterPlace at;  // where the parameters visited next sit

  void tensor(const std::string& name, const Shape& shape, Tensor& member) const { visit(name, shape, member, at); }
  // A matrix an int8 model stores as int8, with its per-row scales in `scale`.
  void matrix(const std::string& name, const Shape& shape, Tensor& member, Tensor& scale) const {
    ParameterPlace p = at;
    p.int8_scale = &scale;
    visit(name, shape, member, p);
  }
  void norm(const std::string& prefix, LayerNorm& n) const {
    tensor(prefix + ".gamma", {d}, n.gamma);
    if (!c.rms_norm) tensor(prefix + ".beta", {d}, n.beta);
  }
  void linear(const std::string& prefix, int64_t out_f, int64_t in_f, Linear& l) const {
    matrix(prefix + ".weight", {out_f, in_f}, l.weight, l.weight_scale);
    if (c.linear_bias) tensor(prefix + ".bias", {out_f}, l.bias);
  }
  void self_attention(const std::string& layer, int64_t heads, AttentionWeights& a) const {
    const int64_t inner = c.attention_width(heads);
    linear(layer + ".self_attn.qkv", 3 * inner, d, a.qkv);
    linear(layer + ".self_attn.out", d, inner, a.out);
    norm(layer + ".self_attn_norm", a.norm);
  }
  void cross_attention(const std::string& layer, AttentionWeights& a) const {
    const int64_t inner = c.attention_width(c.decoder_heads);
    linear(layer + ".cross_attn.q", inner, d, a.q);
    linear(layer + ".cross_attn.kv", 2 * inner, d, a.kv);
    linear(layer + ".cross_attn.out", d, inner, a.out);
    norm(layer + ".cross_attn_norm", a.norm);
  }
  void feed_forward(const std::string& layer, int64_t ffn_dim, FeedForwardWeights& f) const {
    linear(layer + ".ffn.fc1", c.gated_ffn ? 2 * ffn_dim : ffn_dim, d, f.fc1);
    linear(layer + ".ffn.fc2", d, ffn_dim, f.fc2);
    norm(layer + ".ffn_norm", f.norm);
  }
};

}  // namespace

void visit_parameters(const TransformerConfig& c, ModelWeights& w, const ParameterVisitor& visit) {
  Visiting v{visit, c, c.d_model, {}};
  const int64_t D = c.d_model;
  v.at = place(false, Part::embeddings);
  v.matrix("src_embed", {c.src_vocab_size, D}, w.encoder.embed.table, w.encoder.embed.table_scale);
  if (!c.shared_embeddings) {
    v.at = place(true, Part::embeddings);
    v.matrix("tgt_embed", {c.tgt_vocab_size, D}, w.decoder.embed.table, w.decoder.embed.table_scale);
  }
  v.at = place(true, Part::output);
  if (!c.tied_output) v.matrix("out_proj", {c.tgt_vocab_size, D}, w.lm_head.weight, w.lm_head.weight_scale);
  if (c.final_logits_bias) v.tensor("final_logits_bias", {c.tgt_vocab_size}, w.lm_head.bias);
  if (c.position_table) {
    v.at = place(false, Part::embeddings);
    v.tensor("src_positions", {c.max_positions, D}, w.encoder.embed.positions);
    v.at = place(true, Part::embeddings);
    v.tensor("tgt_positions", {c.max_positions, D}, w.decoder.embed.positions);
  }
  if (c.relative_attention_buckets > 0) {
    v.at = place(false, Part::embeddings);
    v.tensor("encoder.relative_attention_bias", {c.relative_attention_buckets, c.encoder_heads},
             w.encoder.relative_attention_bias);
    v.at = place(true, Part::embeddings);
    v.tensor("decoder.relative_attention_bias", {c.relative_attention_buckets, c.decoder_heads},
             w.decoder.relative_attention_bias);
  }

  v.at = place(false, Part::embeddings);
  if (c.embed_norm) v.norm("encoder.embed_norm", w.encoder.embed_norm);
  for (int64_t i = 0; i < c.encoder_layers; ++i) {
    const std::string l = "encoder.layers." + std::to_string(i);
    EncoderLayerWeights& layer = w.encoder.layers.at(static_cast<size_t>(i));
    v.at = place(false, Part::layer, i);
    v.self_attention(l, c.encoder_heads, layer.self_attn);
    v.feed_forward(l, c.encoder_ffn_dim, layer.ffn);
  }
  v.at = place(false, Part::final_norm);
  if (c.encoder_final_norm) v.norm("encoder.final_norm", w.encoder.final_norm);

  v.at = place(true, Part::embeddings);
  if (c.embed_norm) v.norm("decoder.embed_norm", w.decoder.embed_norm);
  for (int64_t i = 0; i < c.decoder_layers; ++i) {
    const std::string l = "decoder.layers." + std::to_string(i);
    DecoderLayerWeights& layer = w.decoder.layers.at(static_cast<size_t>(i));
    v.at = place(true, Part::layer, i);
    v.self_attention(l, c.decoder_heads, layer.self_attn);
    v.cross_attention(l, layer.cross_attn);
    v.feed_forward(l, c.decoder_ffn_dim, layer.ffn);
  }
  v.at = place(true, Part::final_norm);
  if (c.decoder_final_norm) v.norm("decoder.final_norm", w.decoder.final_norm);
}

std::vector<ParameterAlias> parameter_aliases(const TransformerConfig& c) {
  std::vector<ParameterAlias> out;
  const std::string tgt_owner = c.shared_embeddings ? "src_embed" : "tgt_embed";
  if (c.shared_embeddings) out.push_back({"tgt_embed", tgt_owner, place(true, Part::embeddings)});
  if (c.tied_output) out.push_back({"out_proj", tgt_owner, place(true, Part::output)});
  return out;
}

void tie_weights(const TransformerConfig& c, ModelWeights& w) {
  // The scales travel with their int8 matrix (undefined in float models).
  if (c.shared_embeddings) {
    w.decoder.embed.table = w.encoder.embed.table;
    w.decoder.embed.table_scale = w.encoder.embed.table_scale;
  }
  if (c.tied_output) {
    w.lm_head.weight = w.decoder.embed.table;
    w.lm_head.weight_scale = w.decoder.embed.table_scale;
  }
}

std::vector<std::pair<std::string, Shape>> TransformerConfig::parameter_shapes() const {
  std::vector<std::pair<std::string, Shape>> out;
  ModelWeights scratch = sized_weights(*this);
  visit_parameters(*this, scratch, [&out](const std::string& name, const Shape& shape, Tensor&, const ParameterPlace&) {
    out.emplace_back(name, shape);
  });
  return out;
}

}  // namespace tformer
