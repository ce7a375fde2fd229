// Op family attention: fused multi-head attention (online softmax), forward and backward.
// The params struct(s) with their contract (what the device entries receive; conventions in
// tformer/backend.h) and the tensor-level ops (defined with their checks in cpp/ops/).
#pragma once

#include <cstdint>

#include "tformer/backend.h"

namespace tformer {

class Tensor;

// Fused multi-head attention, one pass with an online softmax (no L x L buffer):
//   out[b, i, h*D:(h+1)*D] = softmax_j(scale * q_i . k_j  masked) @ v_j
// Head h of a row lives at column offset h * head_dim; rows of q/k/v/out may be
// slices of a wider buffer (the fused QKV projection), hence the explicit strides.
// Key j of batch b is masked when j >= kv_lengths[b / kv_group] (kv_lengths may be
// null), or when causal and j > i + causal_offset.
// kv_group: query batch b reads key/value batch b / kv_group (beams of one sentence
// share its encoder K/V in cross-attention); k/v batch strides count kv batches.
// weights_out (optional, float32 (batch, q_len, kv_len) whatever dtype is): the
// attention probabilities averaged over heads (alignments); masked keys get 0.
// A query row that sees no key gets a zero output.
// lse_out (optional, float32 (batch, heads, q_len), training): the natural log of each
// row's softmax normaliser, log sum_j exp(scale * q_i . k_j) over unmasked keys; -inf
// for a row that sees no key. See Backend::saves_training_stats.
struct AttentionParams {
  static constexpr char op_name[] = "attention";
  DType dtype = DType::f32;
  int64_t batch = 0, heads = 0, head_dim = 0, q_len = 0, kv_len = 0;
  const void* q = nullptr;
  int64_t q_batch_stride = 0, q_row_stride = 0;
  const void* k = nullptr;
  int64_t k_batch_stride = 0, k_row_stride = 0;
  const void* v = nullptr;
  int64_t v_batch_stride = 0, v_row_stride = 0;
  void* out = nullptr;
  int64_t out_batch_stride = 0, out_row_stride = 0;
  const int32_t* kv_lengths = nullptr;  // (batch) or null
  bool causal = false;
  int64_t causal_offset = 0;
  float scale = 1.0f;
  int64_t kv_group = 1;
  float* weights_out = nullptr;
  float* lse_out = nullptr;
  // Relative position bias (T5), optional, of `dtype`, laid out (span, heads): added to the
  // scaled score of query row i and key j of every batch,
  //   score(b, h, i, j) = scale * q_i . k_j + rel_bias[(rel_bias_origin + j - i) * heads + h].
  // The caller folds causal_offset into the origin and guarantees 0 <= rel_bias_origin + j - i
  // < rel_bias_span for every key that is not masked (masked keys are never read).
  const void* rel_bias = nullptr;
  int64_t rel_bias_origin = 0;
  int64_t rel_bias_span = 0;
  // Per-query-batch origins (int32 (batch), device memory), or null: when set, query batch b
  // uses rel_bias_origins[b] in place of rel_bias_origin (the rows of an engine step sit at
  // different decoder positions). The caller guarantees the [0, span) rule for each row.
  const int32_t* rel_bias_origins = nullptr;
  // Paged K/V (the decode steps of the step scheduler, cpp/decoding/): when block_table is set
  // (int32 (batch, blocks_per_row), device memory), key/value j of query batch b lives in block
  //   blk = block_table[b * blocks_per_row + j / block_size],  row j % block_size:
  //   k + blk * k_batch_stride + (j % block_size) * k_row_stride   (v alike)
  // i.e. k/v are a pool (num_blocks, block_size, width) and the batch strides count blocks.
  // Only with q_len == 1 and kv_group == 1; kv_len = blocks_per_row * block_size; keys at or past
  // kv_lengths[b] are masked (their table entries are never read and may hold anything, e.g. -1).
  // Rows of one beam or one source may share blocks (the same ids in several rows). The
  // arithmetic of a row equals the contiguous one-query path's on the same keys, bit for bit.
  const int32_t* block_table = nullptr;
  int64_t blocks_per_row = 0;
  int64_t block_size = 0;
};

// Gradients of fused attention (FlashAttention-2's backward): the probabilities are
// recomputed tile by tile as P = exp(scale * q . k - lse), then dV = P^T dO,
// dP = dO V^T, dS = P * (dP - rowsum(dO * O)), dQ = scale * dS K, dK = scale * dS^T Q.
// `fwd` describes the forward call (q, k, v, its output `out` (read only here), masks,
// scale; kv_group 1). dq/dk/dv are written, never added; they are column blocks laid out
// like q/k/v (possibly of one fused buffer) and must not overlap the inputs.
struct AttentionBackwardParams {
  static constexpr char op_name[] = "attention_backward";
  AttentionParams fwd;
  const void* dout = nullptr;  // like fwd.out
  int64_t dout_batch_stride = 0, dout_row_stride = 0;
  const float* lse = nullptr;  // (batch, heads, q_len), from the forward's lse_out
  void* dq = nullptr;
  int64_t dq_batch_stride = 0, dq_row_stride = 0;
  void* dk = nullptr;
  int64_t dk_batch_stride = 0, dk_row_stride = 0;
  void* dv = nullptr;
  int64_t dv_batch_stride = 0, dv_row_stride = 0;
  // With fwd.rel_bias: float32 (fwd.rel_bias_span, heads), ACCUMULATED (+=): the sum of dS
  // over every (batch, i, j) that reads the entry. Null: not wanted.
  float* drel_bias = nullptr;
};

namespace ops {

// A block of columns [col, col + heads*head_dim) of a (batch, len, width) tensor.
struct HeadsView {
  const Tensor* tensor = nullptr;
  int64_t col = 0;
};

struct AttentionOptions {
  int64_t heads = 1;
  const Tensor* kv_lengths = nullptr;  // int32 (kv batch), on the device
  bool causal = false;
  int64_t causal_offset = 0;
  float scale = 0.0f;  // 0: head_dim^-0.5
  int64_t kv_group = 1;           // query batch b reads k/v batch b / kv_group
  Tensor* weights_out = nullptr;  // float32 (batch, q_len, kv_len): probabilities averaged over heads
  // Relative position bias (T5): (span, heads) of q's dtype; score(i, j) +=
  // rel_bias[rel_bias_origin + j - i, h] (AttentionParams::rel_bias; causal_offset is NOT
  // added here: fold it into the origin). Every index an unmasked (i, j) reads must lie in
  // [0, span), checked from q_len, kv_len, causal and causal_offset (not kv_lengths, which
  // may live on the device): a decode step over a longer cache passes causal = true with
  // causal_offset = step, so the keys past the step are known to be masked.
  const Tensor* rel_bias = nullptr;
  int64_t rel_bias_origin = 0;
  // int32 (batch) on the device: per-row origins (AttentionParams::rel_bias_origins); the
  // caller guarantees the bounds (the op cannot read device values to check them).
  const Tensor* rel_bias_origins = nullptr;
  // Paged K/V (AttentionParams::block_table): int32 (batch, blocks_per_row) on the device; k
  // and v are then pools (num_blocks, block_size, width). q_len 1, kv_group 1, kv_lengths
  // required. Block ids are the caller's responsibility (the engine builds them host-side).
  const Tensor* block_table = nullptr;
  int64_t block_size = 0;
};

// out (batch, q_len, heads*head_dim) = multi-head attention of q over k, v.
void attention(Tensor& out, HeadsView q, HeadsView k, HeadsView v, const AttentionOptions& opt);

// Attention forward that also saves the log-sum-exp of each (batch, head, query) row:
// lse float32 (batch, heads, q_len). kv_group must be 1.
void attention_train(Tensor& out, HeadsView q, HeadsView k, HeadsView v, const AttentionOptions& opt, Tensor& lse);

// Gradients of fused attention, recomputing the probabilities from q, k and lse (no
// L x L buffer): dq, dk, dv are written into their column blocks (HeadsView of
// possibly one fused (batch, len, 3D) buffer). Same masks and scale as the forward.
struct MutableHeadsView {
  Tensor* tensor = nullptr;
  int64_t col = 0;
};
void attention_backward(MutableHeadsView dq, MutableHeadsView dk, MutableHeadsView dv, HeadsView q, HeadsView k,
                        HeadsView v, const Tensor& out, const Tensor& dout, const Tensor& lse,
                        const AttentionOptions& opt, Tensor* drel_bias = nullptr);
// drel_bias (optional, with opt.rel_bias): float32 like rel_bias, accumulated (+=).

}  // namespace ops

}  // namespace tformer
