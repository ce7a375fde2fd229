"""Single ops of the core on numpy arrays, for tests and experiments.

Each takes `device="cpu"` (or "cuda") and `dtype="float32"`, copies its inputs to
the device, runs the op and returns a new float32 numpy array:

- gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None)
- bias_act(x, bias=None, residual=None, activation="none")   act(x + bias) + residual
- layer_norm(x, gamma, beta, eps=1e-5, bias=None, residual=None, return_sum=False)
- embedding(ids, table, scale=1.0, positions=None, position_ids=None)
- attention(q, k, v, num_heads, kv_lengths=None, causal=False, causal_offset=0, scale=None)
"""
from ._native import _core

gemm = _core.ops.gemm
bias_act = _core.ops.bias_act
layer_norm = _core.ops.layer_norm
embedding = _core.ops.embedding
attention = _core.ops.attention

__all__ = ["gemm", "bias_act", "layer_norm", "embedding", "attention"]
