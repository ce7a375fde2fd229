// A Transformer's weights as typed structs of Tensors. The forward pass, the decode loop
// and the training step read members (w.decoder.layers[i].self_attn.qkv.weight): no name
// is looked up while a model runs. Names exist for the outside (set_parameter, save/load,
// the converters) and are declared once, by visit_parameters (cpp/model/parameter_table.cpp),
// which pairs every name with the member it fills.
//
// A member a config does not use (a bias-free Linear, the embedding LayerNorm of a model
// without one, a parameter not set yet) is an undefined Tensor. The same structs hold a
// training step's gradients (views into TrainGraph's flat buffer; undefined when frozen).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tformer/config.h"
#include "tformer/tensor.h"

namespace tformer {

// y = x @ weight^T + bias.
// In an int8 model (tformer/ops/int8.h) weight is int8 and weight_scale its per-row scales
// (weight[r][c] * weight_scale[r]); otherwise weight_scale is undefined.
struct Linear {
  Tensor weight;        // (out_features, in_features)
  Tensor bias;          // (out_features), or undefined: no bias
  Tensor weight_scale;  // (out_features) float32 with an int8 weight, else undefined
  const Tensor* bias_or_null() const { return bias.defined() ? &bias : nullptr; }
  bool int8() const { return weight_scale.defined(); }
};

struct LayerNorm {
  Tensor gamma;  // (d_model)
  Tensor beta;   // (d_model); undefined with rms_norm (RMSNorm has no shift)
};

struct Embedding {
  Tensor table;        // (vocab, d_model) token embeddings
  Tensor table_scale;  // (vocab) float32 with an int8 table (int8 models), else undefined
  Tensor positions;    // (max_positions, d_model) added at each token's position id
  const Tensor* table_scale_or_null() const { return table_scale.defined() ? &table_scale : nullptr; }
};

// One attention sublayer with its LayerNorm (before it in pre-norm models, after the
// residual add otherwise). Self-attention uses qkv; cross-attention uses q and kv.
// A = heads * head_dim, the attention's inner width (d_model unless config.head_dim says).
struct AttentionWeights {
  Linear qkv;      // self-attention: q, k and v fused, (3A, D)
  Linear q;        // cross-attention: queries from the decoder, (A, D)
  Linear kv;       // cross-attention: k and v fused over the encoder output, (2A, D)
  Linear out;      // (D, A)
  LayerNorm norm;
};

struct FeedForwardWeights {
  Linear fc1;  // (F, D), or (2F, D) with gated_ffn: the gate's input, then the linear half
  Linear fc2;  // (D, F)
  LayerNorm norm;
};

struct EncoderLayerWeights {
  AttentionWeights self_attn;
  FeedForwardWeights ffn;
};

struct DecoderLayerWeights {
  AttentionWeights self_attn;
  AttentionWeights cross_attn;
  FeedForwardWeights ffn;
};

template <class Layer>
struct StackWeights {
  Embedding embed;       // decoder: the source table itself with shared_embeddings
  LayerNorm embed_norm;  // config.embed_norm
  std::vector<Layer> layers;
  LayerNorm final_norm;  // config.encoder_final_norm / decoder_final_norm
  // (relative_attention_buckets, heads): the self-attention bias every layer of the stack
  // adds (config.relative_attention_buckets > 0), else undefined.
  Tensor relative_attention_bias;
};

struct ModelWeights {
  StackWeights<EncoderLayerWeights> encoder;
  StackWeights<DecoderLayerWeights> decoder;
  // weight: out_proj, the decoder's table itself with tied_output; bias: final_logits_bias.
  Linear lm_head;
};

// Every member undefined, the layer vectors sized for the config.
ModelWeights sized_weights(const TransformerConfig& config);

// Where a parameter sits in the model, for code that orders parameters by the part of the
// forward that uses them (TrainGraph's backward stages), never by parsing names.
struct ParameterPlace {
  enum class Part {
    embeddings,  // the token table, the positions table, the embedding LayerNorm, the
                 // relative attention bias table
    layer,       // layers[layer]
    final_norm,  // the LayerNorm on top of the stack
    output,      // out_proj and final_logits_bias (decoder)
  };
  bool decoder = false;
  Part part = Part::embeddings;
  int64_t layer = -1;  // Part::layer only
  // The member that holds this matrix's per-row scales when an int8 model stores it as int8
  // (Linear weights and token tables: Linear::weight_scale, Embedding::table_scale); null
  // for the parameters every model keeps in float (biases, norms, positions, T5's bias table).
  Tensor* int8_scale = nullptr;
};

// The one declaration of the parameter names: calls visit(name, shape, member of w, place)
// for every parameter of a model with this config, in a stable order. Names that alias
// another parameter (parameter_aliases) are not visited: tie_weights points their members
// at what they alias.
using ParameterVisitor =
    std::function<void(const std::string& name, const Shape& shape, Tensor& member, const ParameterPlace& place)>;
void visit_parameters(const TransformerConfig& config, ModelWeights& w, const ParameterVisitor& visit);

// tgt_embed with shared_embeddings (the source table) and out_proj with tied_output (the
// target table): names that read, and whose gradients add into, the parameter `owner`.
struct ParameterAlias {
  std::string name;
  std::string owner;  // a visited parameter
  ParameterPlace place;
};
std::vector<ParameterAlias> parameter_aliases(const TransformerConfig& config);

// After any member was replaced: the aliasing members become their owner again.
void tie_weights(const TransformerConfig& config, ModelWeights& w);

}  // namespace tformer
