"""tformer.ops.attention with a relative position bias (T5) against float64 NumPy.

Contract: rel_bias is (span, heads); the score of query i and key j in head h is
scale * q_i . k_j + rel_bias[rel_bias_origin + j - i, h], for every batch. Masked keys
never read the bias, and every index an unmasked (i, j) reads must lie in [0, span),
the bound being derived from q_len, kv_len, causal and causal_offset (kv_lengths are
not looked at: they may live on the device).

Tolerance as test_attention.py: |out - ref| <= 1e-5 * (max|v| + |ref|); the biases are
O(1) like the scores, so they add a few ulps to the weights at most.
"""

import numpy as np
import pytest
from tformer import ops

from attention_testlib import check_attention, key_mask


def attention_ref(q, k, v, H, rel_bias=None, origin=0, kv_lengths=None, causal=False,
                  causal_offset=0, scale=None, kv_group=1, with_lse=False):
    """(out, weights averaged over heads), or (out, lse) with_lse, in float64."""
    B, Tq, HD = q.shape
    Tk = k.shape[1]
    D = HD // H
    scale = D ** -0.5 if scale is None else scale
    k = np.repeat(k, kv_group, axis=0)  # query batch b reads k/v batch b // kv_group
    v = np.repeat(v, kv_group, axis=0)

    def heads(x, T):
        return x.astype(np.float64).reshape(B, T, H, D).transpose(0, 2, 1, 3)

    scores = np.einsum("bhid,bhjd->bhij", heads(q, Tq), heads(k, Tk)) * scale
    i = np.arange(Tq)[:, None]
    j = np.arange(Tk)[None, :]
    lengths = None if kv_lengths is None else np.repeat(np.asarray(kv_lengths), kv_group)
    masked = key_mask(B, Tq, Tk, lengths, causal, causal_offset)
    assert not masked.all(axis=-1).any(), "test case masks a whole row"
    if rel_bias is not None:
        idx = origin + j - i  # (Tq, Tk); masked entries may fall outside the table
        inside = (idx >= 0) & (idx < rel_bias.shape[0])
        assert np.all(inside[None] | masked), "test case reads outside the bias table"
        bias = rel_bias.astype(np.float64)[np.clip(idx, 0, rel_bias.shape[0] - 1)]  # (Tq, Tk, H)
        scores = scores + bias.transpose(2, 0, 1)[None]
    scores = np.where(masked[:, None], -np.inf, scores)
    m = scores.max(axis=-1, keepdims=True)
    p = np.exp(scores - m)
    total = p.sum(axis=-1, keepdims=True)
    p /= total
    out = np.einsum("bhij,bhjd->bhid", p, heads(v, Tk)).transpose(0, 2, 1, 3).reshape(B, Tq, HD)
    if with_lse:
        return out, (m + np.log(total))[..., 0]  # lse (B, H, Tq)
    return out, p.mean(axis=1)


def _inputs(seed, B, Tq, Tk, H, D, span, kv_group=1):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, Tq, H * D)).astype(np.float32)
    k = rng.standard_normal((B // kv_group, Tk, H * D)).astype(np.float32)
    v = rng.standard_normal((B // kv_group, Tk, H * D)).astype(np.float32)
    # Biases of a few units, as trained T5 tables have: they move the weights a lot.
    bias = (2.0 * rng.standard_normal((span, H))).astype(np.float32)
    return q, k, v, bias


def _run(device, B, Tq, Tk, H, D, span, origin, seed=0, kv_group=1, weights=False, bias_matters=True,
         **mask):
    q, k, v, bias = _inputs(seed, B, Tq, Tk, H, D, span, kv_group)
    kwargs = dict(mask)
    if kwargs.get("kv_lengths") is not None:
        kwargs["kv_lengths"] = np.asarray(kwargs["kv_lengths"], dtype=np.int32)
    got = ops.attention(q, k, v, H, rel_bias=bias, rel_bias_origin=origin, kv_group=kv_group,
                        return_weights=weights, device=device, **kwargs)
    ref, ref_w = attention_ref(q, k, v, H, bias, origin, kv_group=kv_group, **mask)
    what = f"B={B} Tq={Tq} Tk={Tk} H={H} D={D} span={span} origin={origin} {mask}"
    if weights:
        out, w = got
        assert w.dtype == np.float32 and w.shape == ref_w.shape, (w.dtype, w.shape)
        assert np.max(np.abs(w - ref_w)) <= 1e-5, what + " weights"
    else:
        out = got
    check_attention(out, ref, v, what)
    # The bias must matter: without it the answer differs (so a kernel ignoring it fails);
    # not where each row sees a single key (its weight is 1 whatever the bias).
    if not bias_matters:
        return
    plain = attention_ref(q, k, v, H, kv_group=kv_group, **mask)[0]
    assert np.max(np.abs(plain - ref)) > 1e-2, what + ": the bias changes nothing here"


# Query counts below and above the kernel's 4-row decode path and its 32-row query tile;
# key counts crossing its 64-key tile; head_dim not a multiple of the vector width.
@pytest.mark.parametrize("S", [1, 2, 3, 5, 33, 70])
@pytest.mark.parametrize("H,D", [(2, 8), (3, 13)])
def test_encoder_bidirectional(device, S, H, D):
    """T5 encoder: every (i, j), span 2S - 1, origin S - 1 (index = relative distance)."""
    _run(device, B=2, Tq=S, Tk=S, H=H, D=D, span=2 * S - 1, origin=S - 1, seed=S * 10 + D,
         bias_matters=S > 1)


@pytest.mark.parametrize("S", [3, 40])
def test_encoder_with_kv_lengths(device, S):
    """A padded source batch: the padded keys are masked, the others carry the bias."""
    _run(device, B=3, Tq=S, Tk=S, H=2, D=16, span=2 * S - 1, origin=S - 1, seed=S,
         kv_lengths=[S, 1, S // 2 + 1])


@pytest.mark.parametrize("T", [4, 37])
def test_decoder_teacher_forced(device, T):
    """T5 decoder forward: causal, span 2T - 1, origin T - 1 (j > i masked, never read)."""
    _run(device, B=2, Tq=T, Tk=T, H=3, D=8, span=2 * T - 1, origin=T - 1, seed=T, causal=True)


@pytest.mark.parametrize("step", [0, 1, 6, 69])
def test_decode_step(device, step):
    """One decode step over a cache of L positions: q_len 1, keys 0..step visible (causal
    with causal_offset = step), span L holding distances -(L-1)..0, origin L-1 - step."""
    L = 72
    _run(device, B=3, Tq=1, Tk=L, H=4, D=16, span=L, origin=L - 1 - step, seed=step,
         causal=True, causal_offset=step, kv_lengths=[step + 1] * 3, bias_matters=step > 0)


def test_decode_rows_with_causal_offset(device):
    """Several queries at the end of a prefix (the short-query path, Tq < 4)."""
    Tq, Tk = 3, 9
    _run(device, B=2, Tq=Tq, Tk=Tk, H=2, D=8, span=Tk + Tq, origin=Tq - 1, seed=3, causal=True,
         causal_offset=Tk - Tq)


@pytest.mark.parametrize("Tq", [1, 6])
def test_kv_group(device, Tq):
    """Beams sharing their source's K/V (kv_group 2) read the same bias."""
    _run(device, B=4, Tq=Tq, Tk=10, H=2, D=8, span=Tq + 10, origin=Tq - 1, seed=Tq, kv_group=2,
         kv_lengths=[10, 7])


@pytest.mark.parametrize("Tq", [1, 5])
def test_weights_out(device, Tq):
    """The returned attention weights are the biased probabilities, averaged over heads."""
    _run(device, B=2, Tq=Tq, Tk=7, H=3, D=8, span=Tq + 7, origin=Tq - 1, seed=20 + Tq, weights=True,
         kv_lengths=[7, 4])


def test_span_larger_than_needed(device):
    """A table with rows nobody reads, the origin anywhere that keeps the reads inside."""
    _run(device, B=1, Tq=5, Tk=6, H=2, D=8, span=20, origin=9, seed=30)


@pytest.mark.parametrize("Tq", [2, 9])
def test_attention_train_lse_includes_the_bias(device, Tq):
    """Training's forward (the same kernel, decode-row path for Tq 2, tiles for 9) with the
    log-sum-exp the backward recomputes the probabilities from: it includes the bias."""
    B, Tk, H, D = 2, 11, 3, 8
    q, k, v, bias = _inputs(50 + Tq, B, Tq, Tk, H, D, span=Tq + Tk - 1)
    lengths = np.array([Tk, 6], np.int32)
    out, lse = ops.attention_train(q, k, v, H, kv_lengths=lengths, rel_bias=bias,
                                   rel_bias_origin=Tq - 1, device=device)
    ref, ref_lse = attention_ref(q, k, v, H, bias, Tq - 1, kv_lengths=lengths, with_lse=True)
    check_attention(out, ref, v, "attention_train")
    assert lse.dtype == np.float32 and lse.shape == ref_lse.shape, (lse.dtype, lse.shape)
    np.testing.assert_allclose(lse, ref_lse, rtol=1e-5, atol=1e-5)
    plain_lse = attention_ref(q, k, v, H, kv_lengths=lengths, with_lse=True)[1]
    assert np.max(np.abs(plain_lse - ref_lse)) > 1e-2


# ---------------------------------------------------------------- errors

def _args(seed=40, B=2, Tq=3, Tk=4, H=2, D=4):
    return _inputs(seed, B, Tq, Tk, H, D, span=Tq + Tk - 1)


@pytest.mark.parametrize("shape", [(6,), (6, 3), (6, 2, 1), (0, 2)])
def test_wrong_shape(device, shape):
    q, k, v, _ = _args()
    with pytest.raises(ValueError, match=r"attention: rel_bias must be \(span, 2\), got "):
        ops.attention(q, k, v, 2, rel_bias=np.zeros(shape, np.float32), rel_bias_origin=2,
                      device=device)


@pytest.mark.parametrize("origin", [1, 4])
def test_span_too_small_for_origin(device, origin):
    """Tq 3, Tk 4: distances -2..3 need origin >= 2 and origin + 3 < span (6)."""
    q, k, v, bias = _args()
    with pytest.raises(ValueError, match=r"attention: rel_bias rows \[.*\] \(rel_bias_origin .* out of range for span 6"):
        ops.attention(q, k, v, 2, rel_bias=bias, rel_bias_origin=origin, device=device)


def test_span_too_short(device):
    q, k, v, bias = _args()
    with pytest.raises(ValueError, match=r"rel_bias rows \[0, 5\] \(rel_bias_origin 2 .*\) out of range for span 5"):
        ops.attention(q, k, v, 2, rel_bias=bias[:5], rel_bias_origin=2, device=device)


def test_causal_bound_uses_the_offset(device):
    """Causal with causal_offset 0: keys j > i are masked, so a table of distances -2..0
    suffices; the same table without the causal mask is refused."""
    q, k, v, _ = _args(Tq=3, Tk=3)
    bias = np.ones((3, 2), np.float32)
    out = ops.attention(q, k, v, 2, causal=True, rel_bias=bias, rel_bias_origin=2, device=device)
    check_attention(out, attention_ref(q, k, v, 2, bias, 2, causal=True)[0], v, "causal span 3")
    with pytest.raises(ValueError, match=r"rel_bias rows \[0, 4\] \(rel_bias_origin 2 "):
        ops.attention(q, k, v, 2, rel_bias=bias, rel_bias_origin=2, device=device)
    with pytest.raises(ValueError, match=r"causal offset 1"):
        ops.attention(q, k, v, 2, causal=True, causal_offset=1, rel_bias=bias, rel_bias_origin=2,
                      device=device)


def test_wrong_dtype(device):
    """rel_bias must have q's dtype (the binding converts it to rel_bias_dtype)."""
    q, k, v, bias = _args()
    with pytest.raises(TypeError, match=r"attention: rel_bias must be float32"):
        ops.attention(q, k, v, 2, rel_bias=bias.astype(np.int32), rel_bias_origin=2,
                      rel_bias_dtype="int32", device=device)
