// One decoding run of a Transformer: the encoder output, the cross-attention K/V of
// every decoder layer (computed once per source), the self-attention K/V caches
// (preallocated for rows x max_steps) and every buffer a step needs. step() runs the
// decoder on one new token per row; nothing is allocated inside the loop.
#pragma once

#include <vector>

#include "../model/layers.h"
#include "tformer/model.h"

namespace tformer {

class DecodeSession {
 public:
  // rows = batch * beam: row r decodes source r / beam. max_steps: tokens fed to the
  // decoder at most (the start token included).
  DecodeSession(const Transformer& model, const TokenBatch& src, int64_t beam, int64_t max_steps,
                bool want_attention);

  int64_t rows() const { return rows_; }
  int64_t vocab() const { return model_.config().tgt_vocab_size; }
  int64_t src_len(int64_t source) const { return src_lengths_[static_cast<size_t>(source)]; }
  int64_t max_src_len() const { return src_.len; }

  // Feeds tokens[r] at decoder position `step` (0 for the start token); returns the
  // logits (rows, vocab) in host memory, valid until the next call. The output bias may
  // still be missing: the search calls finish_row on each row it reads, first.
  float* step(const int32_t* tokens, int64_t step);
  // Adds the output bias to one row of step()'s logits where step() left it out (on the
  // CPU: the search's own first pass over the row adds it, saving a pass over all logits).
  void finish_row(float* row) const;
  // Cross-attention weights of the last layer for the last step, (rows, max_src_len) host.
  const float* attention() const;
  // Beam reselection: row r continues the hypothesis of row parents[r] (caches up to `step`).
  void reorder(const std::vector<int32_t>& parents, int64_t step);

 private:
  void layer_step(int64_t i, int64_t step);

  const Transformer& model_;
  const TransformerConfig& cfg_;
  const StackWeights<DecoderLayerWeights>& w_;  // the model's; generate holds its lock throughout
  const Linear& lm_head_;
  Transformer::DeviceBatch src_;
  std::vector<int32_t> src_lengths_;
  int64_t beam_, rows_, max_steps_;
  bool want_attention_;
  std::vector<Tensor> cross_kv_;             // per layer (batch, src_len, 2A)
  std::vector<Tensor> k_cache_, v_cache_;    // per layer (rows, max_steps, A), A = heads * head_dim
  Tensor self_rel_bias_;                     // (max_steps, heads) relative position bias, or undefined
  layers::Workspace ws_;                     // sized for (rows, 1)
  Tensor x_;                                 // (rows, 1, D) residual stream
  Tensor ids_, positions_, self_lengths_;    // int32 (rows, 1), (rows, 1), (rows)
  Tensor ids_host_, positions_host_, self_lengths_host_;
  Tensor logits_, logits_host_;              // (rows, V)
  Tensor logits_f32_;                        // (rows, V) f32 on the device, for half-precision models
  const float* pending_bias_ = nullptr;      // output bias finish_row adds, or nullptr
  Tensor weights_dev_, weights_host_;        // (rows, 1, src_len) float32
};

}  // namespace tformer
