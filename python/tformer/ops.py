"""Single ops of the core on numpy arrays, for tests and experiments.

Each takes `device="cpu"` (or "cuda") and `dtype="float32"`, copies its inputs to
the device, runs the op and returns new float32 numpy arrays (inputs are never
modified):

- gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None)
- bias_act(x, bias=None, residual=None, activation="none")   act(x + bias) + residual
- layer_norm(x, gamma, beta, eps=1e-5, bias=None, residual=None, return_sum=False)
- rms_norm(x, gamma, eps=1e-6, bias=None, residual=None, return_sum=False)
  s / sqrt(mean(s^2) + eps) * gamma with s = x + bias + residual (T5's RMSNorm)
- gated_act(x, activation="gelu_tanh")   act(x[..., :n]) * x[..., n:] for x (..., 2n)
- embedding(ids, table, scale=1.0, positions=None, position_ids=None)
- attention(q, k, v, num_heads, kv_lengths=None, causal=False, causal_offset=0, scale=None,
  rel_bias=None, rel_bias_origin=0, kv_group=1, return_weights=False, rel_bias_dtype=None)
  rel_bias (span, num_heads): T5's relative position bias, score(i, j) += rel_bias[origin
  + j - i, h]; kv_group: query batch b reads k/v batch b // kv_group; return_weights:
  (out, weights) with the float32 (batch, q_len, kv_len) probabilities averaged over heads

Training (gradients of parameters accumulate into the given initial values, which
default to zeros; gradients of activations are returned):

- layer_norm_train(x, gamma, beta, eps=1e-5, bias=None, residual=None) -> (out, s, mean, rstd)
- layer_norm_backward(dout, s, mean, rstd, gamma, ds=None, dgamma=None, dbeta=None,
  param_grads=True) -> (ds, dgamma, dbeta)    (a given ds is added to)
- rms_norm_train(x, gamma, eps=1e-6, bias=None, residual=None) -> (out, s, rstd)
- rms_norm_backward(dout, s, rstd, gamma, ds=None, dgamma=None, param_grads=True) -> (ds, dgamma)
- activation_backward(dy, z, activation) -> dz = dy * act'(z)
- gated_act_backward(dy, x, activation) -> dx, the gradient of act(x[..., :n]) * x[..., n:]
- linear_backward(dy, x, weight, dx=None, dweight=None, dbias=None, with_bias=True)
  -> (dx, dweight, dbias)
- sum_rows(dy, dbias=None) -> dbias + dy summed over rows
- attention_train(q, k, v, num_heads, kv_lengths=None, causal=False, causal_offset=0,
  scale=None) -> (out, lse); k = v = None: q is one fused (batch, len, 3 * width) buffer
- attention_backward(dout, q, k, v, out, lse, num_heads, ...) -> (dq, dk, dv), or dqkv (fused)
- embedding_backward(dout, ids, vocab_size, scale=1.0, position_ids=None, num_positions=0,
  skip_id=-1, dtable=None, dpositions=None) -> dtable, or (dtable, dpositions)
- cross_entropy(logits, labels, smoothing=0.0, ignore_index=-100, grad_scale=1.0,
  with_grad=True) -> (loss, dlogits)
- dropout(x, p, seed, offset=0) -> x * mask / (1 - p), the mask a function of (seed, offset + i)
- adamw(param, grad, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
  step=1, grad_scale=1.0) -> (param, m, v)
- sum_squares(x) -> float (double accumulation)
"""
from ._native import _core

gemm = _core.ops.gemm
bias_act = _core.ops.bias_act
layer_norm = _core.ops.layer_norm
rms_norm = _core.ops.rms_norm
gated_act = _core.ops.gated_act
embedding = _core.ops.embedding
attention = _core.ops.attention

layer_norm_train = _core.ops.layer_norm_train
layer_norm_backward = _core.ops.layer_norm_backward
activation_backward = _core.ops.activation_backward
rms_norm_train = _core.ops.rms_norm_train
rms_norm_backward = _core.ops.rms_norm_backward
gated_act_backward = _core.ops.gated_act_backward
linear_backward = _core.ops.linear_backward
sum_rows = _core.ops.sum_rows
attention_train = _core.ops.attention_train
attention_backward = _core.ops.attention_backward
embedding_backward = _core.ops.embedding_backward
cross_entropy = _core.ops.cross_entropy
dropout = _core.ops.dropout
adamw = _core.ops.adamw
sum_squares = _core.ops.sum_squares

__all__ = [
    "gemm", "bias_act", "layer_norm", "rms_norm", "gated_act", "embedding", "attention",
    "layer_norm_train", "layer_norm_backward", "activation_backward", "linear_backward",
    "sum_rows", "attention_train", "attention_backward", "embedding_backward",
    "cross_entropy", "dropout", "adamw", "sum_squares",
    "rms_norm_train", "rms_norm_backward", "gated_act_backward",
]
