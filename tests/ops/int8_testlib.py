"""A NumPy simulation of the int8 rule of tformer/ops/int8.h, the oracle of the int8 tests.

quantize(x): per row amax, scale = amax / 127, q = rint(x * (127 / amax)) clamped to
[-127, 127], all in float32 arithmetic as the rule says (np.rint rounds half to even, like
nearbyint). gemm(...): exact int64 sums, then the contract's float32 epilogue in its order
(float(acc) * (a_scale * b_scale), * alpha, + bias): a kernel must match it bit for bit.
"""
import numpy as np


def quantize(x):
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    q = np.zeros(x.shape, np.int8)
    scale = np.zeros(x.shape[0], np.float32)
    live = amax > 0
    with np.errstate(all="ignore"):
        inv = np.float32(127) / amax[live]
        q[live] = np.clip(np.rint(x[live] * inv[:, None]), -127, 127).astype(np.int8)
        scale[live] = amax[live] / np.float32(127)
    return q, scale


def gemm(x, wq, wscale, bias=None, alpha=1.0):
    """alpha * dequant(quantize(x)) @ dequant(wq, wscale).T + bias, by the contract's order."""
    aq, ascale = quantize(x)
    acc = aq.astype(np.int64) @ wq.astype(np.int64).T
    with np.errstate(all="ignore"):
        s = acc.astype(np.float32) * (ascale[:, None] * np.asarray(wscale, np.float32)[None, :])
        s = np.float32(alpha) * s
        if bias is not None:
            s = s + np.asarray(bias, np.float32)[None, :]
    return s.astype(np.float32)
