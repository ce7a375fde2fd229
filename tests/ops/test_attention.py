"""tformer.ops.attention against an explicit float64 softmax(QK^T * scale + mask) V.

Masking contract: key j is masked for query i of batch b when j >= kv_lengths[b], or
when causal and j > i + causal_offset. Cases never mask a whole row.

Tolerance: |out - ref| <= 1e-5 * (max|v| + |ref|). The output is a convex combination
of rows of v, so errors scale with max|v|; the scores (q.k * D**-0.5 with unit-normal
inputs, so O(1)) carry a few ulps of error, which moves the weights by the same relative
amount.
"""

import numpy as np
import pytest
from tformer import ops

from attention_testlib import check_attention, key_mask


def attention_ref(q, k, v, num_heads, kv_lengths=None, causal=False, causal_offset=0,
                  scale=None):
    B, Tq, HD = q.shape
    Tk = k.shape[1]
    D = HD // num_heads
    if scale is None:
        scale = D ** -0.5

    def heads(x, T):
        return x.astype(np.float64).reshape(B, T, num_heads, D).transpose(0, 2, 1, 3)

    qh, kh, vh = heads(q, Tq), heads(k, Tk), heads(v, Tk)
    scores = np.einsum("bhid,bhjd->bhij", qh, kh) * scale
    masked = key_mask(B, Tq, Tk, kv_lengths, causal, causal_offset)
    assert not masked.all(axis=-1).any(), "test case masks a whole row"
    scores = np.where(masked[:, None], -np.inf, scores)
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = np.einsum("bhij,bhjd->bhid", p, vh)
    return out.transpose(0, 2, 1, 3).reshape(B, Tq, HD)


def _inputs(seed, B, Tq, Tk, H, D):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, Tq, H * D)).astype(np.float32)
    k = rng.standard_normal((B, Tk, H * D)).astype(np.float32)
    v = rng.standard_normal((B, Tk, H * D)).astype(np.float32)
    return q, k, v


def _run(device, B, Tq, Tk, H, D, seed=0, **mask):
    q, k, v = _inputs(seed, B, Tq, Tk, H, D)
    kwargs = dict(mask)
    if kwargs.get("kv_lengths") is not None:
        kwargs["kv_lengths"] = np.asarray(kwargs["kv_lengths"], dtype=np.int32)
    out = ops.attention(q, k, v, H, device=device, **kwargs)
    ref = attention_ref(q, k, v, H, **mask)
    check_attention(out, ref, v, f"B={B} Tq={Tq} Tk={Tk} H={H} D={D} {mask}")


# head_dim 1..128, including values that are not multiples of 8; lengths crossing
# 64- and 128-wide tiles.
HEAD_CASES = [  # (H, D)
    (1, 1), (3, 1), (2, 3), (1, 8), (5, 13), (4, 16), (3, 24), (2, 32), (1, 63),
    (2, 64), (1, 80), (3, 96), (1, 127), (2, 128),
]


@pytest.mark.parametrize("H,D", HEAD_CASES)
def test_attention_no_mask(device, H, D):
    _run(device, B=2, Tq=9, Tk=9, H=H, D=D, seed=H * 131 + D)


@pytest.mark.parametrize("H,D", HEAD_CASES)
def test_attention_cross_with_kv_lengths(device, H, D):
    """Encoder-decoder attention: Tq != Tk, padded keys per row (length 1 and full)."""
    _run(device, B=3, Tq=5, Tk=11, H=H, D=D, seed=H * 7 + D, kv_lengths=[11, 1, 6])


@pytest.mark.parametrize("H,D", [(1, 8), (5, 13), (2, 64), (1, 128)])
def test_attention_causal(device, H, D):
    _run(device, B=2, Tq=12, Tk=12, H=H, D=D, seed=D, causal=True)


@pytest.mark.parametrize("H,D", [(1, 8), (5, 13), (2, 64), (1, 128)])
def test_attention_causal_with_kv_lengths(device, H, D):
    """Decoder self-attention of a right-padded batch."""
    _run(device, B=3, Tq=10, Tk=10, H=H, D=D, seed=D + 1, causal=True,
         kv_lengths=[10, 1, 4])


@pytest.mark.parametrize("Tq,Tk", [(1, 1), (1, 7), (3, 8), (5, 70)])
@pytest.mark.parametrize("H,D", [(3, 16), (4, 13)])
def test_attention_causal_offset(device, Tq, Tk, H, D):
    """Incremental decoding: the Tq queries are the last positions of a Tk-long prefix."""
    _run(device, B=2, Tq=Tq, Tk=Tk, H=H, D=D, seed=Tq * 100 + Tk, causal=True,
         causal_offset=Tk - Tq)


def test_attention_causal_offset_smaller_than_prefix(device):
    """An offset that leaves later keys masked (queries in the middle of the prefix)."""
    _run(device, B=2, Tq=4, Tk=9, H=2, D=8, seed=5, causal=True, causal_offset=2)


def test_attention_causal_offset_and_kv_lengths(device):
    _run(device, B=3, Tq=1, Tk=6, H=2, D=16, seed=6, causal=True, causal_offset=5,
         kv_lengths=[6, 2, 4])


@pytest.mark.parametrize("B,Tq,Tk", [(1, 65, 65), (2, 3, 130), (3, 129, 1), (1, 200, 150)])
def test_attention_long_sequences(device, B, Tq, Tk):
    _run(device, B=B, Tq=Tq, Tk=Tk, H=2, D=32, seed=Tq + Tk)
    _run(device, B=B, Tq=Tq, Tk=Tk, H=2, D=32, seed=Tq + Tk + 1,
         kv_lengths=[max(1, Tk - 3 * b) for b in range(B)])


def test_attention_long_causal(device):
    _run(device, B=2, Tq=140, Tk=140, H=3, D=24, seed=9, causal=True, kv_lengths=[140, 77])


@pytest.mark.parametrize("scale", [0.37, 1.0, 1e-3])
def test_attention_explicit_scale(device, scale):
    """A given scale replaces D**-0.5; 1e-3 makes the weights nearly uniform (the output
    is then close to the mean of the unmasked v rows)."""
    _run(device, B=2, Tq=4, Tk=6, H=3, D=8, seed=10, scale=scale, kv_lengths=[6, 3])


def test_attention_large_scores_stay_finite(device):
    """Scores of order 100: a softmax that does not subtract the row max overflows."""
    q, k, v = _inputs(11, 2, 5, 7, 2, 16)
    q *= 12.0
    k *= 12.0
    out = ops.attention(q, k, v, 2, device=device)
    assert np.all(np.isfinite(out))
    check_attention(out, attention_ref(q, k, v, 2), v, "large scores")


def test_attention_width_not_divisible_by_heads(device):
    q, k, v = _inputs(12, 1, 3, 3, 1, 10)
    with pytest.raises(ValueError, match=r"(?i)head|divisible|\b3\b"):
        ops.attention(q, k, v, 3, device=device)


def test_attention_kv_lengths_wrong_size(device):
    q, k, v = _inputs(13, 2, 3, 4, 2, 4)
    with pytest.raises(ValueError, match=r"(?i)kv_lengths|length|batch"):
        ops.attention(q, k, v, 2, kv_lengths=np.array([4, 4, 4], dtype=np.int32),
                      device=device)
