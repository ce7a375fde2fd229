// One decoder step over any set of rows, each at its own position, reading and writing the
// paged K/V pool: the compute half of decoding, shared by generate (the rows of one request)
// and the step scheduler (the rows of every running request). Every op here is row-
// independent (a row's bits never depend on the other rows of the step), which is what makes
// a request's result the same alone or sharing steps. Buffers are sized for max_rows once;
// nothing is allocated per step.
#pragma once

#include <cstdint>
#include <vector>

#include "../model/layers.h"
#include "kv_pool.h"
#include "tformer/model.h"

namespace tformer::decoding {

class DecoderStep {
 public:
  // max_positions: decoder positions a row may reach (its self-attention table width and, for
  // T5, the span of the relative bias); max_src_len: the longest source a row may attend to.
  DecoderStep(const Transformer& model, KvPool& pool, int64_t max_rows, int64_t max_positions, int64_t max_src_len,
              bool want_attention);

  struct Row {
    int32_t token = 0;
    int64_t step = 0;                                 // decoder position of `token`
    const std::vector<int32_t>* self_blocks = nullptr;   // >= step / block_size + 1 blocks
    const std::vector<int32_t>* cross_blocks = nullptr;  // the row's source's blocks
    int32_t cross_len = 0;                               // its source's length
  };

  // Feeds rows[r].token at position rows[r].step (writing its K/V into its block) and returns
  // the logits (n, vocab) in host memory, valid until the next call. The output bias may be
  // missing: then pending_bias() is not null and each row read needs it added first.
  // attention: whether to compute the alignments (attention()) this step; it never changes
  // the logits.
  float* run(const Row* rows, int64_t n, bool attention);
  const float* pending_bias() const { return pending_bias_; }
  // The last layer's cross-attention alignments of the last run, (n, attention_stride()) host.
  const float* attention() const { return weights_host_.defined() ? weights_host_.data<float>() : nullptr; }
  int64_t attention_stride() const { return attention_stride_; }

  // Encodes nothing: writes the cross-attention K/V of an encoded batch (memory (B, S, D) on
  // the device) into blocks: source b's positions go to blocks[b] (ceil(lengths[b] / bs) ids).
  void write_cross_kv(const Tensor& memory, const std::vector<int32_t>& lengths,
                      const std::vector<std::vector<int32_t>>& blocks);

  int64_t max_rows() const { return max_rows_; }
  int64_t vocab() const { return cfg_.tgt_vocab_size; }

 private:
  void fill_inputs(const Row* rows, int64_t n);
  void layer_step(int64_t i, int64_t n);

  const Transformer& model_;
  const TransformerConfig& cfg_;
  const StackWeights<DecoderLayerWeights>& w_;
  const Linear& lm_head_;
  KvPool& pool_;
  int64_t max_rows_, max_self_blocks_, max_cross_blocks_, rel_span_ = 0;
  bool want_attention_, attention_now_ = false;
  int64_t self_width_ = 0, cross_width_ = 0, attention_stride_ = 0;  // this step's table widths
  Tensor self_rel_bias_;  // (rel_span, heads) for T5, relative positions -(span-1) .. 0
  layers::Workspace ws_;  // sized for (max_rows, 1)
  Tensor x_;              // (max_rows, 1, D)
  // Per-row inputs, host and (on a GPU) device copies, sized for max_rows:
  Tensor ids_host_, ids_, positions_host_, positions_, self_lengths_host_, self_lengths_;
  Tensor slots_host_, slots_, cross_lengths_host_, cross_lengths_, origins_host_, origins_;
  Tensor self_table_host_, self_table_, cross_table_host_, cross_table_;
  // Views of them for this step's n rows and widths:
  Tensor ids_v_, positions_v_, self_lengths_v_, slots_v_, cross_lengths_v_, origins_v_, self_table_v_, cross_table_v_;
  Tensor logits_, logits_host_, logits_f32_;
  const float* pending_bias_ = nullptr;
  Tensor weights_dev_, weights_host_;
};

}  // namespace tformer::decoding
