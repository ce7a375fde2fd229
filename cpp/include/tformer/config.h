// The architecture of an encoder-decoder Transformer, as a typed struct read once
// at construction. Marian (opus-mt), BART, mBART, M2M100/NLLB and the original
// paper's models all map onto it (python/tformer/config.py does the mapping).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tformer/backend.h"
#include "tformer/tensor.h"

namespace tformer {

// How position ids are made from token ids.
enum class PositionIds : int32_t {
  arange = 0,          // position of token t is t + position_offset (Marian, BART, the paper)
  count_non_pad = 1,   // fairseq/M2M100: offset by pad_id + 1, counting only non-pad tokens
};

// Upper bounds on the sizes a config may ask for: far above any published seq2seq model, and
// low enough that nothing is sized from an absurd value (a corrupt config.json) before the
// weights are checked against it. Token ids are int32, hence the vocabulary bound.
struct ConfigLimits {
  static constexpr int64_t max_vocab_size = 2147483647;  // 2^31 - 1
  static constexpr int64_t max_d_model = 65536;
  static constexpr int64_t max_layers = 1024;
  static constexpr int64_t max_ffn_dim = 1048576;        // 2^20
  static constexpr int64_t max_positions = 1048576;      // 2^20
};

struct TransformerConfig {
  int64_t src_vocab_size = 0;
  int64_t tgt_vocab_size = 0;
  int64_t d_model = 512;
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  int64_t encoder_heads = 8;
  int64_t decoder_heads = 8;
  int64_t encoder_ffn_dim = 2048;
  int64_t decoder_ffn_dim = 2048;
  Activation activation = Activation::relu;
  bool pre_norm = false;            // LayerNorm before each sublayer (else after the residual add)
  bool encoder_final_norm = false;  // a LayerNorm after the last encoder layer
  bool decoder_final_norm = false;  // a LayerNorm after the last decoder layer
  bool embed_norm = false;          // a LayerNorm after embeddings + positions (BART's layernorm_embedding)
  float embed_scale = 1.0f;         // token embeddings are multiplied by this (sqrt(d_model) in the paper)
  int64_t max_positions = 1024;     // rows of each positions table
  PositionIds position_ids = PositionIds::arange;
  int64_t position_offset = 0;
  int32_t pad_id = 0;
  bool shared_embeddings = true;    // source and target share one embedding matrix
  bool tied_output = true;          // the output projection is the target embedding matrix
  bool final_logits_bias = false;   // a bias on the vocabulary logits
  float layer_norm_eps = 1e-5f;

  // Throws std::invalid_argument naming the first inconsistent or out-of-range field and
  // its valid range (ConfigLimits; pad_id inside the target vocabulary and, for
  // count_non_pad, inside the positions table).
  void validate() const;
  // (name, shape) of every parameter the model holds, in a stable order (the one table of
  // names: visit_parameters in tformer/weights.h).
  std::vector<std::pair<std::string, Shape>> parameter_shapes() const;
};

}  // namespace tformer
