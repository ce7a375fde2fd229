// Internal: one encoder or decoder layer as a function over parameter views.
// x is the residual stream (batch, len, d_model) and is updated in place.
#pragma once

#include <functional>
#include <string>

#include "tformer/config.h"
#include "tformer/tensor.h"

namespace tformer::layers {

struct Norm {
  const Tensor* gamma = nullptr;
  const Tensor* beta = nullptr;
};

struct Linear {
  const Tensor* weight = nullptr;  // (out, in)
  const Tensor* bias = nullptr;    // (out)
};

struct EncoderLayer {
  Linear qkv, self_out;
  Norm self_attn_norm;
  Linear fc1, fc2;
  Norm ffn_norm;
};

struct DecoderLayer {
  Linear qkv, self_out;
  Norm self_attn_norm;
  Linear cross_q, cross_kv, cross_out;
  Norm cross_attn_norm;
  Linear fc1, fc2;
  Norm ffn_norm;
};

using ParamLookup = std::function<const Tensor&(const std::string&)>;
// Views of layer i's parameters (names as in TransformerConfig::parameter_shapes()).
EncoderLayer encoder_layer(const ParamLookup& param, int64_t i);
DecoderLayer decoder_layer(const ParamLookup& param, int64_t i);

// Buffers shared by all layers of one forward, sized for rows = batch * len.
struct Workspace {
  Tensor qkv;     // (B, T, 3D) fused projections (the cross-attention q uses its first D columns)
  Tensor attn;    // (B, T, D)  attention output, heads concatenated
  Tensor proj;    // (B, T, D)  output projection, before bias and residual
  Tensor normed;  // (B, T, D)  pre-norm input of a sublayer
  Tensor hidden;  // (B, T, F)  feed-forward hidden layer
};

// The first batch*len*cols elements of a buffer, as a (batch, len, cols) tensor.
Tensor view3(const Tensor& buffer, int64_t batch, int64_t len, int64_t cols);

// The input of a sublayer: LayerNorm(x) (into `normed`) in pre-norm models, x itself otherwise.
const Tensor& sublayer_input(const Tensor& x, const Norm& norm, const TransformerConfig& cfg, Tensor& normed);

// x <- x + proj + bias, then LayerNorm in post-norm models; one fused pass either way.
void sublayer_output(Tensor& x, const Tensor& proj, const Tensor* bias, const Norm& norm, const TransformerConfig& cfg);

// The position-wise feed-forward sublayer, residual included.
void feed_forward(Tensor& x, const Linear& fc1, const Linear& fc2, const Norm& norm, const TransformerConfig& cfg,
                  Workspace& ws);

Workspace make_workspace(int64_t batch, int64_t len, int64_t d_model, int64_t ffn_dim, DType dtype, Device device);

// lengths: int32 (batch) on the device.
void encoder_layer_forward(Tensor& x, const EncoderLayer& w, const TransformerConfig& cfg, const Tensor& lengths,
                           Workspace& ws);

// memory: encoder output (batch, src_len, D); memory_kv: (batch, src_len, 2D) buffer for its K/V.
void decoder_layer_forward(Tensor& x, const DecoderLayer& w, const TransformerConfig& cfg, const Tensor& tgt_lengths,
                           const Tensor& memory, const Tensor& src_lengths, Tensor& memory_kv, Workspace& ws);

}  // namespace tformer::layers
