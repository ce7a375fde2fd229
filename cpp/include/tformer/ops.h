// Tensor-level ops: each checks its arguments (shapes, dtypes, devices), then
// dispatches to the tensor's device backend. Outputs come first, then inputs,
// then parameters, as in STYLE.md.
#pragma once

#include <vector>

#include "tformer/backend.h"
#include "tformer/tensor.h"

namespace tformer::ops {

// c = alpha * op(a) @ op(b) + beta * c; all 2-D. c has a's dtype, or float32 with
// float16/bfloat16 a and b (mixed-precision gradients; CUDA only).
void gemm(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
          float alpha = 1.0f, float beta = 0.0f);

// out = x @ weight^T + bias; x (..., in), weight (out_features, in), out (..., out_features).
void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor* bias = nullptr);

// out = act(x + bias) + residual; x, out (..., cols), bias (cols).
void bias_act(Tensor& out, const Tensor& x, const Tensor* bias, const Tensor* residual, Activation act);

// out = LayerNorm(x + bias + residual); sum_out (optional) receives the sum.
void layer_norm(Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                const Tensor& gamma, const Tensor& beta, float eps);

// RMSNorm (T5): out = s / sqrt(mean(s^2) + eps) * gamma with s = x + bias + residual;
// sum_out (optional) receives s.
void rms_norm(Tensor& out, Tensor* sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
              const Tensor& gamma, float eps);

// out (..., cols) = act(x[..., :cols]) * x[..., cols:]; x (..., 2 * cols) (gated FFNs).
void gated_act(Tensor& out, const Tensor& x, Activation act);

// out (..., dim) = table[ids] * scale + positions[position_ids]; ids int32 on the same device.
void embedding(Tensor& out, const Tensor& ids, const Tensor& table, float scale,
               const Tensor* position_ids = nullptr, const Tensor* positions = nullptr);

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
};

// out (batch, q_len, heads*head_dim) = multi-head attention of q over k, v.
void attention(Tensor& out, HeadsView q, HeadsView k, HeadsView v, const AttentionOptions& opt);

// dst[r, :cols] = src[r, :cols] for the first `rows` rows of two 2-D tensors (any widths).
void copy_rows(Tensor& dst, const Tensor& src, int64_t rows, int64_t cols);

// Strided block copy within one device: dst[dst_offset + r * dst_stride + c] =
// src[src_offset + r * src_stride + c] for r < rows, c < cols (offsets and strides in elements).
void copy_strided(Tensor& dst, int64_t dst_offset, int64_t dst_stride, const Tensor& src, int64_t src_offset,
                  int64_t src_stride, int64_t rows, int64_t cols);

// In place along axis 0: row r of t receives old row src_rows[r] (host indices).
void gather_rows(Tensor& t, const std::vector<int32_t>& src_rows, int64_t cols_to_move = -1);

Activation parse_activation(const std::string& name);  // relu, gelu, gelu_tanh/gelu_new, silu/swish, none
const char* activation_name(Activation a);

}  // namespace tformer::ops
