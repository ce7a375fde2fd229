"""
Timing entry points that keep their tensors on the device (bench/gpu/).
"""
from __future__ import annotations
import numpy
import typing
__all__: list[str] = ['AttentionTimer']
class AttentionTimer:
    """
    AttentionTimer(q, k, v, dout, num_heads, causal=False, device='cpu', dtype='float32'):
    q, k, v (and dout, or None for forward only) float32 numpy (batch, len, heads * head_dim),
    uploaded once in `dtype`. forward(n) / backward(n): seconds for n launches of
    attention_train / attention_backward between two device synchronisations.
    outputs(rows): the last out, lse (and dq, dk, dv) of the first rows sequences.
    """
    def __init__(self, q: numpy.ndarray, k: numpy.ndarray, v: numpy.ndarray, dout: numpy.ndarray | None, num_heads: typing.SupportsInt | typing.SupportsIndex, causal: bool = False, device: str = 'cpu', dtype: str = 'float32') -> None:
        ...
    def backward(self, iters: typing.SupportsInt | typing.SupportsIndex = 1) -> float:
        ...
    def forward(self, iters: typing.SupportsInt | typing.SupportsIndex = 1) -> float:
        ...
    def outputs(self, rows: typing.SupportsInt | typing.SupportsIndex = 1) -> dict[str, typing.Any]:
        ...
