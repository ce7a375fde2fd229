// Internal: encoder/decoder layers for training. Forward keeps exactly what the
// backward needs (Acts structs); backward adds parameter gradients (+=) into Grads
// and returns the gradient of the layer input. Unlike inference, nothing is updated
// in place: every sublayer writes a new residual-stream tensor, kept for the backward.
#pragma once

#include <cstdint>
#include <vector>

#include "tformer/config.h"
#include "tformer/tensor.h"
#include "tformer/weights.h"

namespace tformer::training {

// Gradients are held in the weight structs themselves (tformer/weights.h: a gradient
// member has its parameter's shape; undefined when the parameter is frozen). The ops take
// them as pointers, nullptr for none.
inline Tensor* grad_of(Tensor& g) { return g.defined() ? &g : nullptr; }
struct LinearGrad {
  Tensor* weight = nullptr;
  Tensor* bias = nullptr;
};
struct NormGrad {
  Tensor* gamma = nullptr;
  Tensor* beta = nullptr;
};
inline LinearGrad grads_of(Linear& g) { return {grad_of(g.weight), grad_of(g.bias)}; }
inline NormGrad grads_of(LayerNorm& g) { return {grad_of(g.gamma), grad_of(g.beta)}; }

struct Dropout {
  float p = 0.0f;          // residual / embedding dropout
  float activation = 0.0f; // after the FFN activation
  uint64_t seed = 0;
  uint64_t next_offset = 0;  // advanced by every dropout site, so each gets its own mask
  uint64_t take(int64_t n) {
    const uint64_t o = next_offset;
    next_offset += static_cast<uint64_t>(n);
    return o;
  }
};

// The LayerNorm (or RMSNorm) of a sublayer: its input sum s and per-row statistics
// (RMSNorm: rstd only).
struct NormActs {
  Tensor s, mean, rstd;
};

// out = norm(x + residual) with the statistics saved in a: LayerNorm, or RMSNorm when the
// config says so (T5; gamma only).
void norm_train(Tensor& out, const Tensor& x, const Tensor* residual, const LayerNorm& norm,
                const TransformerConfig& cfg, NormActs& a);
// ds = (or += when accumulate) the gradient through norm_train; g's gamma / beta +=.
void norm_backward(Tensor& ds, LayerNorm& g, const Tensor& dout, const LayerNorm& norm, const TransformerConfig& cfg,
                   const NormActs& a, bool accumulate = false);

struct SublayerOut {  // residual + dropout (+ LayerNorm in post-norm models)
  uint64_t drop_offset = 0;
  NormActs norm;  // post-norm: LN(x + y); pre-norm: LN(x) at the sublayer input
};

// I = heads * head_dim, the attention's inner width (D unless the config sets head_dim).
struct AttentionActs {
  Tensor in;    // (B, T, D) the sublayer input after the pre-norm (or x)
  Tensor qkv;   // self: (B, T, 3I); cross: q (B, T, I)
  Tensor kv;    // cross only: (B, S, 2I)
  Tensor attn;  // (B, T, I)
  Tensor lse;   // (B, H, T)
  SublayerOut out;
};

struct FfnActs {
  Tensor in;  // (B, T, D)
  Tensor z;   // (B, T, F) pre-activation; gated FFN: (B, T, 2F), the two halves of fc1
  Tensor a;   // (B, T, F) activation (after activation dropout)
  uint64_t act_drop_offset = 0;
  SublayerOut out;
};

struct EncoderLayerActs {
  AttentionActs self;
  FfnActs ffn;
};
struct DecoderLayerActs {
  AttentionActs self, cross;
  FfnActs ffn;
};

struct BatchInfo {
  const Tensor* lengths = nullptr;  // int32 (B) on the device
  int64_t heads = 1;
  bool causal = false;
  float scale = 0.0f;  // of the attention scores; 0: head_dim^-0.5
  // Self-attention's relative position bias (T5), shared by the stack's layers: (span,
  // heads) read at rel_bias_origin + j - i; drel_bias float32 (span, heads) receives += each
  // layer's gradient. Null: none.
  const Tensor* rel_bias = nullptr;
  int64_t rel_bias_origin = 0;
  Tensor* drel_bias = nullptr;
};

// x: (B, T, D) layer input; returns the layer output.
Tensor encoder_layer_train(const Tensor& x, const EncoderLayerWeights& w, const TransformerConfig& cfg,
                           const BatchInfo& batch, Dropout& drop, EncoderLayerActs& acts);
// dy: gradient of the layer output; returns the gradient of the layer input. g: the
// layer's parameter gradients (+=).
Tensor encoder_layer_backward(const Tensor& dy, const EncoderLayerWeights& w, EncoderLayerWeights& g,
                              const TransformerConfig& cfg, const BatchInfo& batch, const Dropout& drop,
                              const EncoderLayerActs& acts);

Tensor decoder_layer_train(const Tensor& x, const Tensor& memory, const DecoderLayerWeights& w,
                           const TransformerConfig& cfg, const BatchInfo& self_batch, const BatchInfo& cross_batch,
                           Dropout& drop, DecoderLayerActs& acts);
// dmemory (B, S, D) receives += the gradient through this layer's cross-attention K/V.
Tensor decoder_layer_backward(const Tensor& dy, Tensor& dmemory, const Tensor& memory, const DecoderLayerWeights& w,
                              DecoderLayerWeights& g, const TransformerConfig& cfg, const BatchInfo& self_batch,
                              const BatchInfo& cross_batch, const Dropout& drop, const DecoderLayerActs& acts);

}  // namespace tformer::training
