// Internal: one encoder or decoder layer as a function over its typed weights
// (tformer/weights.h). x is the residual stream (batch, len, d_model), updated in place.
#pragma once

#include "tformer/config.h"
#include "tformer/tensor.h"
#include "tformer/weights.h"

namespace tformer::layers {

// Buffers shared by all layers of one forward, sized for rows = batch * len. A: the
// attention's inner width (heads * head_dim, d_model unless config.head_dim says).
struct Workspace {
  Tensor qkv;     // (B, T, 3A) fused projections (the cross-attention q uses its first A columns)
  Tensor attn;    // (B, T, A)  attention output, heads concatenated
  Tensor proj;    // (B, T, D)  output projection, before bias and residual
  Tensor normed;  // (B, T, D)  pre-norm input of a sublayer
  Tensor hidden;  // (B, T, F)  feed-forward hidden layer
  Tensor gate;    // (B, T, 2F) gated FFNs' fused input projections; undefined otherwise
};

// A stack's relative position bias for its self-attention (AttentionOptions::rel_bias and
// rel_bias_origin): undefined `bias` when the model has none.
struct RelativeBias {
  Tensor bias;          // (span, heads)
  int64_t origin = 0;   // row of relative position 0 for query row 0
  const Tensor* get() const { return bias.defined() ? &bias : nullptr; }
};

// RMSNorm or LayerNorm (config.rms_norm) of x + bias + residual into out.
void norm(Tensor& out, const Tensor& x, const Tensor* bias, const Tensor* residual, const LayerNorm& n,
          const TransformerConfig& cfg);

// out = x @ l.weight^T + l.bias: ops::int8_linear for an int8 weight (int8 models, its
// bias in the GEMM's epilogue), ops::linear otherwise.
void linear(Tensor& out, const Tensor& x, const Linear& l);

// out = x @ l.weight^T, leaving l's bias to the caller's next op where that fuses it for
// free: returns the bias still to add (float weights: l's bias, as the float path always
// did; int8 weights: null, the bias went into int8_linear's epilogue).
const Tensor* linear_deferring_bias(Tensor& out, const Tensor& x, const Linear& l);

// logits = cfg.logits_scale * x @ head.weight^T + bias (the scale as the product's alpha;
// an int8 head takes both into its epilogue).
void project_logits(Tensor& logits, const Tensor& x, const Linear& head, const Tensor* bias,
                    const TransformerConfig& cfg);

// The first batch*len*cols elements of a buffer, as a (batch, len, cols) tensor.
Tensor view3(const Tensor& buffer, int64_t batch, int64_t len, int64_t cols);

// The input of a sublayer: LayerNorm(x) (into `normed`) in pre-norm models, x itself otherwise.
const Tensor& sublayer_input(const Tensor& x, const LayerNorm& norm, const TransformerConfig& cfg, Tensor& normed);

// x <- x + proj + bias, then LayerNorm in post-norm models; one fused pass either way.
void sublayer_output(Tensor& x, const Tensor& proj, const Tensor* bias, const LayerNorm& norm,
                     const TransformerConfig& cfg);

// The position-wise feed-forward sublayer, residual included.
void feed_forward(Tensor& x, const FeedForwardWeights& w, const TransformerConfig& cfg, Workspace& ws);

// Token embeddings * scale + positions (x: (batch, len, D)), then the embedding LayerNorm
// when the config has one.
void embed(Tensor& x, const Tensor& ids, const Tensor& position_ids, const Embedding& w, const LayerNorm& norm,
           const TransformerConfig& cfg);

// The LayerNorm on top of a stack, in place, when the config has one (`present`).
void final_norm(Tensor& x, const LayerNorm& norm, bool present, const TransformerConfig& cfg);

// For the encoder's or the decoder's layers (their heads and FFN width).
Workspace make_workspace(int64_t batch, int64_t len, const TransformerConfig& cfg, bool decoder, DType dtype,
                         Device device);

// lengths: int32 (batch) on the device. rel: the stack's relative position bias.
void encoder_layer_forward(Tensor& x, const EncoderLayerWeights& w, const TransformerConfig& cfg, const Tensor& lengths,
                           const RelativeBias& rel, Workspace& ws);

// memory: encoder output (batch, src_len, D); memory_kv: (batch, src_len, 2A) buffer for its K/V.
void decoder_layer_forward(Tensor& x, const DecoderLayerWeights& w, const TransformerConfig& cfg, const Tensor& tgt_lengths,
                           const RelativeBias& rel, const Tensor& memory, const Tensor& src_lengths, Tensor& memory_kv,
                           Workspace& ws);

}  // namespace tformer::layers
