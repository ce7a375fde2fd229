#include "tformer/config.h"

#include "tformer/errors.h"

namespace tformer {

void TransformerConfig::validate() const {
  auto positive = [](const char* name, int64_t v) {
    if (v < 1) throw_value_error("config: ", name, " must be >= 1, got ", v);
  };
  positive("src_vocab_size", src_vocab_size);
  positive("tgt_vocab_size", tgt_vocab_size);
  positive("d_model", d_model);
  positive("encoder_layers", encoder_layers);
  positive("decoder_layers", decoder_layers);
  positive("encoder_heads", encoder_heads);
  positive("decoder_heads", decoder_heads);
  positive("encoder_ffn_dim", encoder_ffn_dim);
  positive("decoder_ffn_dim", decoder_ffn_dim);
  positive("max_positions", max_positions);
  if (d_model % encoder_heads != 0)
    throw_value_error("config: d_model ", d_model, " is not divisible by encoder_heads ", encoder_heads);
  if (d_model % decoder_heads != 0)
    throw_value_error("config: d_model ", d_model, " is not divisible by decoder_heads ", decoder_heads);
  if (shared_embeddings && src_vocab_size != tgt_vocab_size)
    throw_value_error("config: shared_embeddings needs src_vocab_size == tgt_vocab_size, got ", src_vocab_size,
                      " and ", tgt_vocab_size);
  if (position_offset < 0) throw_value_error("config: position_offset must be >= 0, got ", position_offset);
  if (!(layer_norm_eps >= 0.0f)) throw_value_error("config: layer_norm_eps must be >= 0, got ", layer_norm_eps);
}

std::vector<std::pair<std::string, Shape>> TransformerConfig::parameter_shapes() const {
  const int64_t D = d_model;
  std::vector<std::pair<std::string, Shape>> out;
  auto norm = [&](const std::string& prefix) {
    out.emplace_back(prefix + ".gamma", Shape{D});
    out.emplace_back(prefix + ".beta", Shape{D});
  };
  auto linear = [&](const std::string& prefix, int64_t out_f, int64_t in_f) {
    out.emplace_back(prefix + ".weight", Shape{out_f, in_f});
    out.emplace_back(prefix + ".bias", Shape{out_f});
  };

  out.emplace_back("src_embed", Shape{src_vocab_size, D});
  if (!shared_embeddings) out.emplace_back("tgt_embed", Shape{tgt_vocab_size, D});
  if (!tied_output) out.emplace_back("out_proj", Shape{tgt_vocab_size, D});
  if (final_logits_bias) out.emplace_back("final_logits_bias", Shape{tgt_vocab_size});
  out.emplace_back("src_positions", Shape{max_positions, D});
  out.emplace_back("tgt_positions", Shape{max_positions, D});

  if (embed_norm) norm("encoder.embed_norm");
  for (int64_t i = 0; i < encoder_layers; ++i) {
    const std::string l = "encoder.layers." + std::to_string(i);
    linear(l + ".self_attn.qkv", 3 * D, D);
    linear(l + ".self_attn.out", D, D);
    norm(l + ".self_attn_norm");
    linear(l + ".ffn.fc1", encoder_ffn_dim, D);
    linear(l + ".ffn.fc2", D, encoder_ffn_dim);
    norm(l + ".ffn_norm");
  }
  if (encoder_final_norm) norm("encoder.final_norm");

  if (embed_norm) norm("decoder.embed_norm");
  for (int64_t i = 0; i < decoder_layers; ++i) {
    const std::string l = "decoder.layers." + std::to_string(i);
    linear(l + ".self_attn.qkv", 3 * D, D);
    linear(l + ".self_attn.out", D, D);
    norm(l + ".self_attn_norm");
    linear(l + ".cross_attn.q", D, D);
    linear(l + ".cross_attn.kv", 2 * D, D);
    linear(l + ".cross_attn.out", D, D);
    norm(l + ".cross_attn_norm");
    linear(l + ".ffn.fc1", decoder_ffn_dim, D);
    linear(l + ".ffn.fc2", D, decoder_ffn_dim);
    norm(l + ".ffn_norm");
  }
  if (decoder_final_norm) norm("decoder.final_norm");
  return out;
}

}  // namespace tformer
