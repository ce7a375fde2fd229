// The architecture of an encoder-decoder Transformer, as a typed struct read once
// at construction. Marian (opus-mt), BART, mBART, M2M100/NLLB, T5/mT5 and the original
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
  static constexpr int64_t max_relative_buckets = 65536;
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
  int64_t max_positions = 1024;     // rows of each positions table (without one: the longest sequence)
  PositionIds position_ids = PositionIds::arange;
  int64_t position_offset = 0;
  int32_t pad_id = 0;
  bool shared_embeddings = true;    // source and target share one embedding matrix
  bool tied_output = true;          // the output projection is the target embedding matrix
  bool final_logits_bias = false;   // a bias on the vocabulary logits
  float layer_norm_eps = 1e-5f;

  // T5-style switches (Raffel et al. 2020); the defaults are the other families'.
  bool rms_norm = false;            // RMSNorm (weight only, no mean subtracted) in place of LayerNorm
  bool linear_bias = true;          // the layers' Linears have biases (T5: none)
  int64_t head_dim = 0;             // width of one attention head (T5's d_kv); 0: d_model / heads
  float attention_scale = 0.0f;     // scores are q.k * this; 0: head_dim^-0.5 (T5: 1, folded into q)
  bool gated_ffn = false;           // fc1 is (2F, D): act(first F) * second F (T5 v1.1's wi_0, wi_1)
  bool position_table = true;       // a positions table is added to the embeddings (T5: none)
  // Relative position bias of self-attention: one (buckets, heads) table per stack shared by its
  // layers, indexed by transformers' T5 bucket of j - i (bidirectional in the encoder, causal in
  // the decoder; logarithmic bins up to max_distance). 0 buckets: none.
  int64_t relative_attention_buckets = 0;
  int64_t relative_attention_max_distance = 128;
  float logits_scale = 1.0f;        // logits = logits_scale * h @ out_proj^T (tied T5: d_model^-0.5)
  // Training conventions of a family (no effect on inference):
  bool padding_row = true;          // the pad id's embedding row gets no gradient from lookups
                                    // (nn.Embedding(padding_idx=pad)); T5: trained like any token,
                                    // it is also the decoder start
  bool final_norm_dropout = false;  // dropout on each stack's output after its final norm (T5)

  // Width of one head of a stack with `heads` heads, and of all of them (the attention's inner
  // width, which may differ from d_model when head_dim is set).
  int64_t head_width(int64_t heads) const { return head_dim > 0 ? head_dim : d_model / heads; }
  int64_t attention_width(int64_t heads) const { return heads * head_width(heads); }

  // Throws std::invalid_argument naming the first inconsistent or out-of-range field and
  // its valid range (ConfigLimits; pad_id inside the target vocabulary and, for
  // count_non_pad, inside the positions table).
  void validate() const;
  // (name, shape) of every parameter the model holds, in a stable order (the one table of
  // names: visit_parameters in tformer/weights.h).
  std::vector<std::pair<std::string, Shape>> parameter_shapes() const;
};

}  // namespace tformer
