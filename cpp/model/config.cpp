#include "tformer/config.h"

#include <cmath>

#include "tformer/errors.h"

namespace tformer {

void TransformerConfig::validate() const {
  using L = ConfigLimits;
  auto in_range = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) throw_value_error("config: ", name, " must be in [", lo, ", ", hi, "], got ", v);
  };
  in_range("src_vocab_size", src_vocab_size, 1, L::max_vocab_size);
  in_range("tgt_vocab_size", tgt_vocab_size, 1, L::max_vocab_size);
  in_range("d_model", d_model, 1, L::max_d_model);
  in_range("encoder_layers", encoder_layers, 1, L::max_layers);
  in_range("decoder_layers", decoder_layers, 1, L::max_layers);
  in_range("encoder_heads", encoder_heads, 1, d_model);
  in_range("decoder_heads", decoder_heads, 1, d_model);
  in_range("encoder_ffn_dim", encoder_ffn_dim, 1, L::max_ffn_dim);
  in_range("decoder_ffn_dim", decoder_ffn_dim, 1, L::max_ffn_dim);
  in_range("max_positions", max_positions, 1, L::max_positions);
  in_range("head_dim", head_dim, 0, L::max_d_model);
  if (head_dim == 0 && d_model % encoder_heads != 0)
    throw_value_error("config: d_model ", d_model, " is not divisible by encoder_heads ", encoder_heads,
                      " (or set head_dim)");
  if (head_dim == 0 && d_model % decoder_heads != 0)
    throw_value_error("config: d_model ", d_model, " is not divisible by decoder_heads ", decoder_heads,
                      " (or set head_dim)");
  if (head_dim > 0) {
    in_range("encoder_heads * head_dim", encoder_heads * head_dim, 1, L::max_d_model);
    in_range("decoder_heads * head_dim", decoder_heads * head_dim, 1, L::max_d_model);
  }
  if (!(attention_scale >= 0.0f) || !std::isfinite(attention_scale))
    throw_value_error("config: attention_scale must be a finite number >= 0 (0: head_dim^-0.5), got ",
                      attention_scale);
  if (!std::isfinite(logits_scale))
    throw_value_error("config: logits_scale must be a finite number, got ", logits_scale);
  // The bucket formula needs max_exact = buckets / 4 (bidirectional) >= 1 and a logarithmic
  // range above it: log(max_distance / max_exact) > 0 with max_exact up to buckets / 2 (causal).
  if (relative_attention_buckets != 0) {
    in_range("relative_attention_buckets", relative_attention_buckets, 4, L::max_relative_buckets);
    in_range("relative_attention_max_distance", relative_attention_max_distance, relative_attention_buckets / 2 + 1,
             L::max_positions);
  }
  if (shared_embeddings && src_vocab_size != tgt_vocab_size)
    throw_value_error("config: shared_embeddings needs src_vocab_size == tgt_vocab_size, got ", src_vocab_size,
                      " and ", tgt_vocab_size);
  // The first position id must be a row of the table (arange starts at the offset).
  in_range("position_offset", position_offset, 0, max_positions - 1);
  // The pad id is fed to the target embedding (finished rows) and, with count_non_pad,
  // is itself a position row with the first token at pad_id + 1.
  in_range("pad_id", pad_id, 0, tgt_vocab_size - 1);
  if (position_ids == PositionIds::count_non_pad && pad_id + 1 >= max_positions)
    throw_value_error("config: with position_ids count_non_pad, pad_id must be in [0, max_positions - 1 = ",
                      max_positions - 1, "), got ", pad_id);
  if (!std::isfinite(embed_scale)) throw_value_error("config: embed_scale must be a finite number, got ", embed_scale);
  if (!(layer_norm_eps >= 0.0f) || !std::isfinite(layer_norm_eps))
    throw_value_error("config: layer_norm_eps must be a finite number >= 0, got ", layer_norm_eps);
}

}  // namespace tformer
