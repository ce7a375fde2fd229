"""
Single ops on numpy arrays (tests, experiments).
"""
from __future__ import annotations
import numpy
import typing
__all__: list[str] = ['activation_backward', 'adamw', 'attention', 'attention_backward', 'attention_train', 'bias_act', 'cpu_int8_kernel', 'cross_entropy', 'dequantize_rows', 'dropout', 'embedding', 'embedding_backward', 'gated_act', 'gated_act_backward', 'gemm', 'int8_linear', 'layer_norm', 'layer_norm_backward', 'layer_norm_train', 'linear_backward', 'quantize_rows', 'rms_norm', 'rms_norm_backward', 'rms_norm_train', 'scatter_rows', 'sum_rows', 'sum_squares']
def activation_backward(dy: numpy.ndarray, z: numpy.ndarray, activation: str, device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    dz = activation_backward(dy, z, activation): dy * act'(z).
    """
def adamw(param: numpy.ndarray, grad: numpy.ndarray, m: numpy.ndarray, v: numpy.ndarray, lr: typing.SupportsFloat | typing.SupportsIndex = 0.001, beta1: typing.SupportsFloat | typing.SupportsIndex = 0.9, beta2: typing.SupportsFloat | typing.SupportsIndex = 0.999, eps: typing.SupportsFloat | typing.SupportsIndex = 1e-08, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0, step: typing.SupportsInt | typing.SupportsIndex = 1, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, device: str = 'cpu', half_dtype: str | None = None) -> tuple[typing.Any, ...]:
    """
    (param, m, v) = adamw(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step): one
    torch.optim.AdamW step (step is 1-based); new arrays, the inputs are not modified.
    half_dtype ('float16'/'bfloat16', CUDA only): param is a float32 master copy and a fourth
    array returns the updated weights rounded to half_dtype (as float32 values).
    """
def attention(q: numpy.ndarray, k: numpy.ndarray, v: numpy.ndarray, num_heads: typing.SupportsInt | typing.SupportsIndex, kv_lengths: numpy.ndarray | None = None, causal: bool = False, causal_offset: typing.SupportsInt | typing.SupportsIndex = 0, scale: typing.SupportsFloat | typing.SupportsIndex | None = None, rel_bias: numpy.ndarray | None = None, rel_bias_origin: typing.SupportsInt | typing.SupportsIndex = 0, kv_group: typing.SupportsInt | typing.SupportsIndex = 1, return_weights: bool = False, device: str = 'cpu', dtype: str = 'float32', rel_bias_dtype: str | None = None, block_table: numpy.ndarray | None = None, block_size: typing.SupportsInt | typing.SupportsIndex = 0, rel_bias_origins: numpy.ndarray | None = None) -> typing.Any:
    """
    attention(q, k, v, num_heads, kv_lengths=None, causal=False, causal_offset=0, scale=None,
    rel_bias=None, rel_bias_origin=0, kv_group=1, return_weights=False, rel_bias_dtype=None,
    block_table=None, block_size=0, rel_bias_origins=None)
    block_table int32 (batch, blocks_per_row): paged K/V, k and v being pools (num_blocks,
    block_size, width); key j of row b is k[block_table[b, j // block_size], j % block_size]
    (q_len 1, kv_group 1, kv_lengths required); rel_bias_origins int32 (batch): per-row origins
    rel_bias (span, num_heads): T5's relative position bias, score(i, j) += rel_bias[origin
    + j - i, h]; kv_group: query batch b reads k/v batch b // kv_group; return_weights:
    (out, weights) with the float32 (batch, q_len, kv_len) probabilities averaged over heads
    """
def attention_backward(dout: numpy.ndarray, q: numpy.ndarray, k: numpy.ndarray | None, v: numpy.ndarray | None, out: numpy.ndarray, lse: numpy.ndarray, num_heads: typing.SupportsInt | typing.SupportsIndex = 1, kv_lengths: numpy.ndarray | None = None, causal: bool = False, causal_offset: typing.SupportsInt | typing.SupportsIndex = 0, scale: typing.SupportsFloat | typing.SupportsIndex | None = None, rel_bias: numpy.ndarray | None = None, rel_bias_origin: typing.SupportsInt | typing.SupportsIndex = 0, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    (dq, dk, dv) = attention_backward(dout, q, k, v, out, lse, num_heads, ...), from the
    forward's out and lse (attention_train); with k and v None, q is fused and one dqkv
    comes back. With rel_bias, its float32 gradient drel_bias comes last.
    Example: dq, dk, dv = ops.attention_backward(g, q, k, v, out, lse, 4)
    """
def attention_train(q: numpy.ndarray, k: numpy.ndarray | None = None, v: numpy.ndarray | None = None, num_heads: typing.SupportsInt | typing.SupportsIndex = 1, kv_lengths: numpy.ndarray | None = None, causal: bool = False, causal_offset: typing.SupportsInt | typing.SupportsIndex = 0, scale: typing.SupportsFloat | typing.SupportsIndex | None = None, rel_bias: numpy.ndarray | None = None, rel_bias_origin: typing.SupportsInt | typing.SupportsIndex = 0, device: str = 'cpu', dtype: str = 'float32') -> tuple[numpy.ndarray, numpy.ndarray]:
    """
    (out, lse) = attention_train(q, k, v, num_heads, ...): attention that also returns the
    log-sum-exp float32 (batch, heads, q_len). With k and v None, q is one fused
    (batch, len, 3 * width) buffer. rel_bias (span, heads): score(i, j) += rel_bias[origin + j - i].
    Example: out, lse = ops.attention_train(q, k, v, 4)
    """
def bias_act(x: numpy.ndarray, bias: numpy.ndarray | None = None, residual: numpy.ndarray | None = None, activation: str = 'none', device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    bias_act(x, bias=None, residual=None, activation="none"): act(x + bias) + residual
    """
def cpu_int8_kernel() -> str:
    """
    The int8 GEMM kernel this CPU runs: 'avx512_vnni', 'avx_vnni', 'avx2' or 'base'
    """
def cross_entropy(logits: numpy.ndarray, labels: numpy.ndarray, smoothing: typing.SupportsFloat | typing.SupportsIndex = 0.0, ignore_index: typing.SupportsInt | typing.SupportsIndex = -100, grad_scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, with_grad: bool = True, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    (loss, dlogits) = cross_entropy(logits, labels, smoothing, ignore_index, grad_scale): per-row
    torch.nn.functional.cross_entropy(..., reduction='none') and its gradient times grad_scale.
    """
def dequantize_rows(q: numpy.ndarray, scale: numpy.ndarray) -> numpy.ndarray:
    """
    x = dequantize_rows(q, scale): float32 q * scale[:, None]
    """
def dropout(x: numpy.ndarray, p: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex = 0, device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    Inverted dropout with a counter-based mask: the same (seed, offset) gives the same mask,
    so dropout(grad, p, seed, offset) is the backward.
    """
def embedding(ids: numpy.ndarray, table: numpy.ndarray, scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, positions: numpy.ndarray | None = None, position_ids: numpy.ndarray | None = None, device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    embedding(ids, table, scale=1.0, positions=None, position_ids=None)
    """
def embedding_backward(dout: numpy.ndarray, ids: numpy.ndarray, vocab_size: typing.SupportsInt | typing.SupportsIndex, scale: typing.SupportsFloat | typing.SupportsIndex = 1.0, position_ids: numpy.ndarray | None = None, num_positions: typing.SupportsInt | typing.SupportsIndex = 0, skip_id: typing.SupportsInt | typing.SupportsIndex = -1, dtable: numpy.ndarray | None = None, dpositions: numpy.ndarray | None = None, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    dtable (or (dtable, dpositions) with position_ids) = embedding_backward(dout, ids, vocab_size,
    scale): scatter-add of scale * dout by id (+ dout by position id); rows with id skip_id skipped.
    """
def gated_act(x: numpy.ndarray, activation: str = 'gelu_tanh', device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    gated_act(x, activation="gelu_tanh")   act(x[..., :n]) * x[..., n:] for x (..., 2n)
    """
def gated_act_backward(dy: numpy.ndarray, x: numpy.ndarray, activation: str, device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    dx = gated_act_backward(dy, x, activation): the gradient of act(x[..., :n]) * x[..., n:]
    with respect to x (..., 2n), from dy (..., n).
    """
def gemm(a: numpy.ndarray, b: numpy.ndarray, trans_a: bool = False, trans_b: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, c: numpy.ndarray | None = None, device: str = 'cpu', dtype: str = 'float32', c_dtype: str | None = None) -> numpy.ndarray:
    """
    gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None)
    """
def int8_linear(x: numpy.ndarray, weight: numpy.ndarray, weight_scale: numpy.ndarray, bias: numpy.ndarray | None = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> numpy.ndarray:
    """
    out = int8_linear(x, weight, weight_scale, bias=None, alpha=1.0): alpha * x @ (weight * scale).T + bias,
    x quantized per row on entry (tformer/ops/int8.h); CPU
    """
def layer_norm(x: numpy.ndarray, gamma: numpy.ndarray, beta: numpy.ndarray, eps: typing.SupportsFloat | typing.SupportsIndex = 9.999999747378752e-06, bias: numpy.ndarray | None = None, residual: numpy.ndarray | None = None, return_sum: bool = False, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    layer_norm(x, gamma, beta, eps=1e-5, bias=None, residual=None, return_sum=False)
    """
def layer_norm_backward(dout: numpy.ndarray, s: numpy.ndarray, mean: numpy.ndarray, rstd: numpy.ndarray, gamma: numpy.ndarray, ds: numpy.ndarray | None = None, dgamma: numpy.ndarray | None = None, dbeta: numpy.ndarray | None = None, param_grads: bool = True, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    (ds, dgamma, dbeta) = layer_norm_backward(dout, s, mean, rstd, gamma): given ds, the
    gradient is added to it (accumulate); dgamma / dbeta (default zeros) are added to.
    param_grads=False returns ds alone.
    """
def layer_norm_train(x: numpy.ndarray, gamma: numpy.ndarray, beta: numpy.ndarray, eps: typing.SupportsFloat | typing.SupportsIndex = 9.999999747378752e-06, bias: numpy.ndarray | None = None, residual: numpy.ndarray | None = None, device: str = 'cpu', dtype: str = 'float32') -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """
    (out, s, mean, rstd) = layer_norm_train(x, gamma, beta, eps, bias, residual): layer_norm
    that also returns the sum s = x + bias + residual and per-row mean and rstd (float32).
    """
def linear_backward(dy: numpy.ndarray, x: numpy.ndarray, weight: numpy.ndarray, dx: numpy.ndarray | None = None, dweight: numpy.ndarray | None = None, dbias: numpy.ndarray | None = None, with_bias: bool = True, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    (dx, dweight, dbias) = linear_backward(dy, x, weight) for y = x @ weight.T + bias; a given
    dx, dweight or dbias is added to (dweight / dbias default to zeros).
    """
def quantize_rows(x: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """
    (q, scale) = quantize_rows(x): int8 rows and their float32 scales, x ~= q * scale[:, None]
    """
def rms_norm(x: numpy.ndarray, gamma: numpy.ndarray, eps: typing.SupportsFloat | typing.SupportsIndex = 9.999999974752427e-07, bias: numpy.ndarray | None = None, residual: numpy.ndarray | None = None, return_sum: bool = False, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    rms_norm(x, gamma, eps=1e-6, bias=None, residual=None, return_sum=False)
    s / sqrt(mean(s^2) + eps) * gamma with s = x + bias + residual (T5's RMSNorm)
    """
def rms_norm_backward(dout: numpy.ndarray, s: numpy.ndarray, rstd: numpy.ndarray, gamma: numpy.ndarray, ds: numpy.ndarray | None = None, dgamma: numpy.ndarray | None = None, param_grads: bool = True, device: str = 'cpu', dtype: str = 'float32') -> typing.Any:
    """
    (ds, dgamma) = rms_norm_backward(dout, s, rstd, gamma): given ds, the gradient is added
    to it (accumulate); dgamma (default zeros) is added to. param_grads=False returns ds alone.
    """
def rms_norm_train(x: numpy.ndarray, gamma: numpy.ndarray, eps: typing.SupportsFloat | typing.SupportsIndex = 9.999999974752427e-07, bias: numpy.ndarray | None = None, residual: numpy.ndarray | None = None, device: str = 'cpu', dtype: str = 'float32') -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """
    (out, s, rstd) = rms_norm_train(x, gamma, eps, bias, residual): rms_norm that also
    returns the sum s = x + bias + residual and per-row rstd = 1 / sqrt(mean(s^2) + eps).
    """
def scatter_rows(dst: numpy.ndarray, dst_col: typing.SupportsInt | typing.SupportsIndex, dst_rows: numpy.ndarray, src: numpy.ndarray, src_col: typing.SupportsInt | typing.SupportsIndex, cols: typing.SupportsInt | typing.SupportsIndex, device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    A copy of dst with dst[dst_rows[r], dst_col:dst_col+cols] = src[r, src_col:src_col+cols] (rows of
    dst: its first axis; src (rows, width) or (rows, 1, width)): the paged K/V pool's write.
    """
def sum_rows(dy: numpy.ndarray, dbias: numpy.ndarray | None = None, device: str = 'cpu', dtype: str = 'float32') -> numpy.ndarray:
    """
    dbias + dy summed over all but the last axis.
    """
def sum_squares(x: numpy.ndarray, device: str = 'cpu', dtype: str = 'float32') -> float:
    """
    Sum of squares of all elements, accumulated in double.
    """
