"""Helpers shared by the attention tests (test_attention*.py): the masking contract and the
forward's tolerance."""

import numpy as np
import torch


def key_mask(B, Tq, Tk, kv_lengths=None, causal=False, causal_offset=0):
    """(B, Tq, Tk) bool: key j is masked for query i of batch b when j >= kv_lengths[b], or
    when causal and j > i + causal_offset."""
    j = np.arange(Tk)
    masked = np.zeros((B, Tq, Tk), dtype=bool)
    if kv_lengths is not None:
        masked |= j[None, None, :] >= np.asarray(kv_lengths)[:, None, None]
    if causal:
        masked |= j[None, None, :] > (np.arange(Tq)[:, None] + causal_offset)[None]
    return masked


def torch_key_mask(B, Tq, Tk, **mask):
    return torch.from_numpy(key_mask(B, Tq, Tk, **mask))


def check_attention(out, ref, v, what):
    """A float32 output within 1e-5 * (max|v| + |ref|) of the float64 reference."""
    assert isinstance(out, np.ndarray) and out.dtype == np.float32, (type(out), out.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    bound = 1e-5 * (np.max(np.abs(v)) + np.abs(ref))
    err = np.abs(out.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"{what}: err {err[worst]:.3e} > {bound[worst]:.3e} at {worst}"
