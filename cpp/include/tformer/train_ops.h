// Tensor-level ops for training: the backward of every forward op, the fused
// label-smoothed cross-entropy, dropout and AdamW. Conventions (llm.c's): gradients
// of PARAMETERS accumulate (+=) so micro-batches add up; gradients of ACTIVATIONS are
// written (=) unless the function says otherwise.
#pragma once

#include <cstdint>

#include "tformer/backend.h"
#include "tformer/ops.h"
#include "tformer/tensor.h"

namespace tformer::ops {

// y = x @ weight^T + bias, x (rows, in), weight (out, in):
//   dx = dy @ weight (written, or added when accumulate_dx), dweight += dy^T @ x,
//   dbias += sum over rows of dy. Any of dx / dweight / dbias may be null.
// Parameter gradients (dweight, dbias here; dgamma, dbeta, dtable, dpositions below) have
// the dtype of what they belong to, or float32 with float16/bfloat16 values on a GPU
// (mixed precision: they accumulate in float32).
void linear_backward(Tensor* dx, Tensor* dweight, Tensor* dbias, const Tensor& dy, const Tensor& x,
                     const Tensor& weight, bool accumulate_dx = false);

// dbias (cols) += sum over rows of dy (rows, cols).
void sum_rows(Tensor& dbias, const Tensor& dy);

// Forward y = act(z) (z = x + bias, kept by the caller): dz = dy * act'(z). dz may alias dy.
void bias_act_backward(Tensor& dz, const Tensor& dy, const Tensor& z, Activation act);

// Layer norm that also saves, per row, mean and rstd (float32 (rows)) for the backward.
// Same arguments as layer_norm, plus the two outputs.
void layer_norm_train(Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                      const Tensor& gamma, const Tensor& beta, float eps, Tensor& mean, Tensor& rstd);

// Backward of out = (s - mean) * rstd * gamma + beta, given the saved s, mean, rstd:
// ds = written (or added when accumulate), dgamma += , dbeta += .
void layer_norm_backward(Tensor& ds, Tensor* dgamma, Tensor* dbeta, const Tensor& dout, const Tensor& s,
                         const Tensor& mean, const Tensor& rstd, const Tensor& gamma, bool accumulate = false);

// RMSNorm that also saves each row's rstd = 1 / sqrt(mean(s^2) + eps) (float32 (rows)).
void rms_norm_train(Tensor& out, Tensor& sum_out, const Tensor& x, const Tensor* bias, const Tensor* residual,
                    const Tensor& gamma, float eps, Tensor& rstd);

// Backward of out = s * rstd * gamma: ds written (or added when accumulate), dgamma +=.
void rms_norm_backward(Tensor& ds, Tensor* dgamma, const Tensor& dout, const Tensor& s, const Tensor& rstd,
                       const Tensor& gamma, bool accumulate = false);

// Backward of gated_act: dx (..., 2 * cols) written from dy (..., cols) and the forward's x.
void gated_act_backward(Tensor& dx, const Tensor& dy, const Tensor& x, Activation act);

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

// out = table[ids] * scale + positions[position_ids] backward:
//   dtable[ids[r]] += scale * dout[r];  dpositions[position_ids[r]] += dout[r] (when given).
// Rows whose id equals skip_id (e.g. the pad id, -1: none) contribute nothing.
void embedding_backward(Tensor* dtable, Tensor* dpositions, const Tensor& dout, const Tensor& ids,
                        const Tensor* position_ids, float scale, int32_t skip_id = -1);

// torch.nn.functional.cross_entropy(logits, labels, label_smoothing=eps, ignore_index)
// per row, fused with its gradient: loss (rows) float32 = (1 - eps) * -log p[label] +
// eps/V * sum_c -log p[c] (0 for ignored rows); dlogits (optional) = (softmax - target) *
// grad_scale (0 for ignored rows). dlogits may alias logits.
void cross_entropy(Tensor& loss, Tensor* dlogits, const Tensor& logits, const Tensor& labels, float smoothing,
                   int32_t ignore_index, float grad_scale);

// Inverted dropout with a counter-based mask: element i is kept with probability 1 - p
// depending only on (seed, offset + i), so the backward regenerates it by calling
// dropout on the gradient with the same seed and offset. out may alias x.
void dropout(Tensor& out, const Tensor& x, float p, uint64_t seed, uint64_t offset);

// AdamW (torch.optim.AdamW): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// param -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + lr * weight_decay * param.
// The hyperparameters are doubles, like torch's Python floats: 1 - beta2 of the float
// 0.999f is 1.3e-5 away from 0.001, which moved v by that much against torch.
struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;        // 1-based, for the bias corrections
  float grad_scale = 1.0f; // multiplies g first (gradient clipping, loss scaling)
};
// param_half (optional, float16/bfloat16 like param, CUDA only): also receives the updated
// param rounded to its dtype (param is then a float32 master copy of it).
void adamw(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWOptions& opt,
           Tensor* param_half = nullptr);

// Sum of squares of all elements, accumulated in double, returned on the host.
double sum_squares(const Tensor& t);

}  // namespace tformer::ops
