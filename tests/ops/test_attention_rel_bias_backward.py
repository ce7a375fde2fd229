"""tformer.ops.attention_backward with a relative position bias (T5) against torch autograd
in float64: softmax(scale * Q K^T + B) V with B[b, h, i, j] = rel_bias[origin + j - i, h]
gathered from a (span, heads) table, masks as the forward (kv_lengths, causal).

attention_backward(..., rel_bias=, rel_bias_origin=) returns (dq, dk, dv, drel_bias):
drel_bias float32 (span, heads), the sum of dS over every (batch, i, j) that read the entry
(zero for entries no unmasked key reads). The backward is given torch's float64 out and
lse (rounded to float32), so this checks the backward alone.

Tolerances: dq, dk, dv as test_attention_backward.py (1e-5 * the largest |gradient| of the
three, plus 1e-5 relative); drel_bias: 1e-5 * its largest |entry| + 1e-5 relative, each
entry a float32 sum over at most batch * q_len values of dS (and at least 1e-5 * the
gradients' scale: with one key every dS is 0 up to rounding).
"""

import numpy as np
import pytest
import torch
from tformer import ops

from attention_testlib import torch_key_mask
from train_testlib import assert_close, f64, run


def torch_reference(q, k, v, table, origin, dout, H, kv_lengths=None, causal=False, causal_offset=0, scale=1.0):
    """(out, lse, dq, dk, dv, dtable) in float64."""
    B, Tq, W = q.shape
    Tk = k.shape[1]
    D = W // H
    tq, tk, tv, tb = (torch.tensor(f64(a), requires_grad=True) for a in (q, k, v, table))

    def heads(x, T):
        return x.reshape(B, T, H, D).transpose(1, 2)

    rel = origin + torch.arange(Tk)[None, :] - torch.arange(Tq)[:, None]  # (Tq, Tk)
    bias = tb[rel.clamp(0, table.shape[0] - 1)].permute(2, 0, 1)  # (H, Tq, Tk); out-of-range ones are masked
    s = heads(tq, Tq) @ heads(tk, Tk).transpose(-1, -2) * scale + bias[None]
    masked = torch_key_mask(B, Tq, Tk, kv_lengths=kv_lengths, causal=causal, causal_offset=causal_offset)
    s = s.masked_fill(masked[:, None], -torch.inf)
    lse = torch.logsumexp(s, -1)
    out = (torch.softmax(s, -1) @ heads(tv, Tk)).transpose(1, 2).reshape(B, Tq, W)
    out.backward(torch.tensor(f64(dout)))
    return (out.detach().numpy(), lse.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy(),
            tb.grad.numpy())


def _inputs(seed, B, Tq, Tk, H, D, span):
    rng = np.random.default_rng(seed)
    q, k, v, dout = (rng.standard_normal((B, T, H * D)).astype(np.float32) for T in (Tq, Tk, Tk, Tq))
    table = (2.0 * rng.standard_normal((span, H))).astype(np.float32)
    return q, k, v, dout, table


def _check(device, B, Tq, Tk, H, D, span, origin, seed, **masks):
    q, k, v, dout, table = _inputs(seed, B, Tq, Tk, H, D, span)
    out, lse, rdq, rdk, rdv, rdb = torch_reference(q, k, v, table, origin, dout, H, **masks)
    dq, dk, dv, db = run(device, ops.attention_backward, dout, q, k, v, out.astype(np.float32),
                         lse.astype(np.float32), H, scale=1.0, rel_bias=table, rel_bias_origin=origin, **masks)
    assert db.dtype == np.float32 and db.shape == (span, H)
    big = max(np.max(np.abs(r)) for r in (rdq, rdk, rdv))
    for got, ref, what in ((dq, rdq, "dq"), (dk, rdk, "dk"), (dv, rdv, "dv")):
        assert_close(got, ref, atol=1e-5 * big, rtol=1e-5, what=what)
    # One key: dS = P (dP - delta) is 0 up to rounding, so drel_bias is measured against the
    # gradients' scale too (as dq and dk are): summation orders differ across devices.
    assert_close(db, rdb, atol=1e-5 * max(np.max(np.abs(rdb)), big), rtol=1e-5, what="drel_bias")
    return db, rdb


@pytest.mark.parametrize("B,T,H,D", [(1, 1, 1, 4), (2, 5, 3, 8), (2, 70, 2, 16), (1, 130, 4, 12)])
def test_encoder_self_attention(device, B, T, H, D):
    """Bidirectional: span 2T - 1, origin T - 1 (the encoder's layout)."""
    _check(device, B, T, T, H, D, 2 * T - 1, T - 1, seed=T * 10 + H)


@pytest.mark.parametrize("B,T,H,D", [(1, 3, 1, 4), (3, 9, 2, 8), (2, 100, 2, 16)])
def test_decoder_causal_self_attention(device, B, T, H, D):
    """Causal, teacher-forced: span 2T - 1, origin T - 1; entries for j > i stay zero."""
    db, rdb = _check(device, B, T, T, H, D, 2 * T - 1, T - 1, seed=T + 3, causal=True)
    np.testing.assert_array_equal(db[T:], 0.0)  # relative distances > 0 are never read
    assert np.all(np.abs(rdb[:T]).sum(-1) > 0)


def test_padded_keys(device):
    """kv_lengths: keys past each sentence's length read no bias and get no gradient."""
    db, _ = _check(device, 3, 20, 20, 2, 8, 39, 19, seed=5, kv_lengths=np.array([20, 7, 1], np.int32))
    assert np.any(db != 0)


def test_wider_table_and_causal_offset(device):
    """A span wider than needed and an origin that folds in a causal offset (decode-style rows)."""
    T, Tk, off = 6, 40, 34
    _check(device, 2, T, Tk, 3, 8, 80, 45, seed=9, causal=True, causal_offset=off)


def test_fused_qkv(device):
    """One fused (batch, len, 3 * width) buffer: (dqkv, drel_bias) comes back."""
    B, T, H, D = 2, 11, 2, 8
    q, k, v, dout, table = _inputs(11, B, T, T, H, D, 2 * T - 1)
    out, lse, rdq, rdk, rdv, rdb = torch_reference(q, k, v, table, T - 1, dout, H)
    qkv = np.concatenate([q, k, v], -1)
    dqkv, db = run(device, ops.attention_backward, dout, qkv, None, None, out.astype(np.float32),
                   lse.astype(np.float32), H, scale=1.0, rel_bias=table, rel_bias_origin=T - 1)
    big = max(np.max(np.abs(r)) for r in (rdq, rdk, rdv))
    assert_close(dqkv, np.concatenate([rdq, rdk, rdv], -1), atol=1e-5 * big, rtol=1e-5, what="dqkv")
    assert_close(db, rdb, atol=1e-5 * np.max(np.abs(rdb)), rtol=1e-5, what="drel_bias")


def test_rel_bias_errors(device):
    B, T, H, D = 1, 4, 2, 4
    q, k, v, dout, table = _inputs(1, B, T, T, H, D, 7)
    lse = np.zeros((B, H, T), np.float32)
    call = lambda tb, origin, **kw: run(device, ops.attention_backward, dout, q, k, v, dout, lse, H,
                                        rel_bias=tb, rel_bias_origin=origin, **kw)
    with pytest.raises(ValueError, match=r"attention_backward: rel_bias must be \(span, 2\), got \(7, 3\)"):
        call(np.zeros((7, 3), np.float32), 3)
    with pytest.raises(ValueError, match=r"attention_backward: rel_bias rows \[-1, 5\] \(rel_bias_origin 2 .* out of range for span 7"):
        call(table, 2)
    with pytest.raises(ValueError, match=r"attention_backward: rel_bias rows \[1, 7\] \(rel_bias_origin 4 .* out of range for span 7"):
        call(table, 4)
    call(table, 3, causal=True)  # causal: only [0, 3] is read
    with pytest.raises(ValueError, match=r"rel_bias rows \[-1, 2\]"):
        call(np.zeros((4, 2), np.float32), 2, causal=True)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_train_with_rel_bias_then_backward(device, causal):
    """The training forward saves an lse that includes the bias: out and lse match torch, and
    the backward from them gives torch's gradients."""
    B, T, H, D = 2, 37, 3, 8
    q, k, v, dout, table = _inputs(21, B, T, T, H, D, 2 * T - 1)
    lengths = np.array([T, 30], np.int32)
    rout, rlse, rdq, rdk, rdv, rdb = torch_reference(q, k, v, table, T - 1, dout, H, kv_lengths=lengths,
                                                     causal=causal)
    kw = dict(scale=1.0, rel_bias=table, rel_bias_origin=T - 1, kv_lengths=lengths, causal=causal)
    out, lse = run(device, ops.attention_train, q, k, v, H, **kw)
    assert_close(out, rout, atol=1e-5 * np.max(np.abs(v)), rtol=1e-5, what="out")
    assert_close(lse, rlse, atol=1e-6 * (1 + np.abs(rlse)), what="lse")
    dq, dk, dv, db = run(device, ops.attention_backward, dout, q, k, v, out, lse, H, **kw)
    big = max(np.max(np.abs(r)) for r in (rdq, rdk, rdv))
    for got, ref, what in ((dq, rdq, "dq"), (dk, rdk, "dk"), (dv, rdv, "dv")):
        assert_close(got, ref, atol=1e-5 * big, rtol=1e-5, what=what)
    assert_close(db, rdb, atol=1e-5 * np.max(np.abs(rdb)), rtol=1e-5, what="drel_bias")
