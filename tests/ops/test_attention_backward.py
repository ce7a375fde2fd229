"""tformer.ops.attention_train / attention_backward against torch autograd in float64.

attention_train returns (out, lse): out as ops.attention, lse (batch, heads, q_len) the
log-sum-exp of each row's masked, scaled scores (-inf for a row that sees no key).
attention_backward recomputes the probabilities from q, k and lse (FlashAttention-2)
and returns (dq, dk, dv); with k = v = None, q is one fused (batch, len, 3 * width)
buffer and one dqkv comes back (column views of one tensor on both sides).

Masks as the forward: key j is masked for query i of batch b when j >= kv_lengths[b],
or when causal and j > i + causal_offset.

Tolerances:
- out: as test_attention.py, 1e-5 * (max|v| + |ref|).
- lse: 1e-6 * (1 + |ref|): the scores are O(1) and carry a few ulps; log adds one.
- dq, dk, dv: 1e-5 * the largest |gradient| of the three, plus 1e-5 relative. Each
  gradient is a sum over up to 130 keys or queries of products of O(1) terms, and
  dS = P * (dP - delta) subtracts two O(|dO| |V|) sums, so float32 errors scale with the
  largest gradients, not with each element; measured at most 1.1e-6 of it over these
  cases. Not per tensor or batch entry: where a row sees a single key, dq is exactly 0
  in exact arithmetic (P = 1, dP = delta) and float32 leaves the rounding of dP - delta
  (9e-7 in test_attention_backward_cross_with_kv_lengths[2-64]; all of dq in
  test_attention_backward_causal_offset[1-1-0] on AVX2, where max|dq| = 0).
"""

import numpy as np
import pytest
import tformer
import torch
from tformer import ops

from attention_testlib import torch_key_mask
from train_testlib import assert_close, f64, run


def torch_reference(q, k, v, dout, H, kv_lengths=None, causal=False, causal_offset=0, scale=None):
    """(out, lse, dq, dk, dv) in float64; rows that see no key get zeros (and lse -inf)."""
    B, Tq, W = q.shape
    Tk = k.shape[1]
    D = W // H
    scale = D ** -0.5 if scale is None else scale
    tq, tk, tv = (torch.tensor(f64(a), requires_grad=True) for a in (q, k, v))

    def heads(x, T):
        return x.reshape(B, T, H, D).transpose(1, 2)

    s = heads(tq, Tq) @ heads(tk, Tk).transpose(-1, -2) * scale
    masked = torch_key_mask(B, Tq, Tk, kv_lengths=kv_lengths, causal=causal, causal_offset=causal_offset)
    masked = masked[:, None].expand(B, H, Tq, Tk)
    s = s.masked_fill(masked, -torch.inf)
    lse = torch.logsumexp(s, -1)
    empty = masked.all(-1, keepdim=True)
    p = torch.where(empty, 0.0, torch.softmax(s.masked_fill(empty, 0.0), -1))
    out = (p @ heads(tv, Tk)).transpose(1, 2).reshape(B, Tq, W)
    out.backward(torch.tensor(f64(dout)))
    return (out.detach().numpy(), lse.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(),
            tv.grad.numpy())


def _inputs(seed, B, Tq, Tk, H, D):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, Tq, H * D)).astype(np.float32)
    k = rng.standard_normal((B, Tk, H * D)).astype(np.float32)
    v = rng.standard_normal((B, Tk, H * D)).astype(np.float32)
    dout = rng.standard_normal((B, Tq, H * D)).astype(np.float32)
    return q, k, v, dout


def _check_grad(out, ref, scale, what):
    assert_close(out, ref, atol=1e-5 * scale, rtol=1e-5, what=what)


def _check_all(got, ref, v, what):
    out, lse, dq, dk, dv = got
    rout, rlse, rdq, rdk, rdv = ref
    assert out.dtype == np.float32 and lse.dtype == np.float32
    assert_close(out, rout, atol=1e-5 * np.max(np.abs(v)), rtol=1e-5, what=f"{what} out")
    finite = np.isfinite(rlse)
    assert np.array_equal(np.isfinite(lse), finite), f"{what}: lse -inf pattern"
    assert np.all(lse[~finite] == -np.inf)
    assert_close(lse[finite], rlse[finite], atol=1e-6, rtol=1e-6, what=f"{what} lse")
    scale = max(np.max(np.abs(r)) for r in (rdq, rdk, rdv))
    _check_grad(dq, rdq, scale, f"{what} dq")
    _check_grad(dk, rdk, scale, f"{what} dk")
    _check_grad(dv, rdv, scale, f"{what} dv")


def _run(device, B, Tq, Tk, H, D, seed=0, **mask):
    q, k, v, dout = _inputs(seed, B, Tq, Tk, H, D)
    kwargs = dict(mask)
    if kwargs.get("kv_lengths") is not None:
        kwargs["kv_lengths"] = np.asarray(kwargs["kv_lengths"], dtype=np.int32)
    out, lse = run(device, ops.attention_train, q, k, v, H, **kwargs)
    assert lse.shape == (B, H, Tq)
    dq, dk, dv = run(device, ops.attention_backward, dout, q, k, v, out, lse, H, **kwargs)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    ref = torch_reference(q, k, v, dout, H, **mask)
    _check_all((out, lse, dq, dk, dv), ref, v, f"B={B} Tq={Tq} Tk={Tk} H={H} D={D} {mask}")


# Odd head dims (not multiples of the 16-wide register blocks) and several heads.
HEAD_CASES = [(1, 1), (3, 1), (2, 3), (1, 8), (5, 13), (4, 16), (2, 33), (2, 64), (1, 80), (1, 127)]


@pytest.mark.parametrize("H,D", HEAD_CASES)
def test_attention_backward_no_mask(device, H, D):
    _run(device, B=2, Tq=9, Tk=9, H=H, D=D, seed=H * 131 + D)


@pytest.mark.parametrize("H,D", [(1, 8), (5, 13), (2, 64)])
def test_attention_backward_cross_with_kv_lengths(device, H, D):
    """Tq != Tk, padded keys per row (length 1, partial, full), several key tiles."""
    _run(device, B=3, Tq=37, Tk=130, H=H, D=D, seed=H * 7 + D, kv_lengths=[130, 1, 66])


@pytest.mark.parametrize("Tq,Tk", [(70, 70), (33, 65), (100, 100)])
def test_attention_backward_causal(device, Tq, Tk):
    """Causal self-attention over several query (32) and key (64) tiles."""
    _run(device, B=2, Tq=Tq, Tk=Tk, H=2, D=24, seed=Tq + Tk, causal=True, causal_offset=Tk - Tq)


def test_attention_backward_causal_with_kv_lengths(device):
    """Decoder self-attention of a right-padded batch."""
    _run(device, B=3, Tq=40, Tk=40, H=3, D=16, seed=9, causal=True, kv_lengths=[40, 1, 23])


@pytest.mark.parametrize("Tq,Tk,offset", [(1, 1, 0), (1, 7, 6), (3, 8, 5), (5, 70, 65), (4, 9, 2),
                                          (12, 80, 3)])
def test_attention_backward_causal_offset(device, Tq, Tk, offset):
    """Queries at the end of a prefix (offset Tk - Tq) or in its middle (keys past the
    last query's position get zero gradients). Tq < 4 takes the forward's few-queries path."""
    _run(device, B=2, Tq=Tq, Tk=Tk, H=3, D=13, seed=Tq * 100 + Tk, causal=True, causal_offset=offset)


@pytest.mark.parametrize("Tq", [1, 2, 3, 5])
def test_attention_backward_few_queries_kv_lengths(device, Tq):
    _run(device, B=3, Tq=Tq, Tk=20, H=2, D=16, seed=Tq, kv_lengths=[20, 3, 11])


def test_attention_backward_custom_scale(device):
    _run(device, B=2, Tq=11, Tk=7, H=2, D=10, seed=3, scale=0.37)


@pytest.mark.parametrize("Tq", [2, 9])
def test_attention_rows_without_keys(device, Tq):
    """A batch entry with kv_length 0 and causal rows before the first key (negative
    offset): zero output, lse -inf, zero gradients, and the other rows unaffected."""
    _run(device, B=2, Tq=Tq, Tk=6, H=2, D=8, seed=4, kv_lengths=[6, 0])
    _run(device, B=2, Tq=Tq, Tk=6, H=2, D=8, seed=5, causal=True, causal_offset=-1)


@pytest.mark.parametrize("T,H,D,causal", [(9, 2, 13, False), (70, 3, 16, True)])
def test_attention_backward_fused_qkv(device, T, H, D, causal):
    """q, k, v as column blocks of one (batch, len, 3 * width) buffer, and dq, dk, dv
    written into the column blocks of one gradient buffer."""
    q, k, v, dout = _inputs(T + D, 2, T, T, H, D)
    qkv = np.concatenate([q, k, v], axis=-1)
    lengths = np.array([T, T // 2 + 1], np.int32)
    out, lse = run(device, ops.attention_train, qkv, None, None, H, kv_lengths=lengths, causal=causal)
    dqkv = run(device, ops.attention_backward, dout, qkv, None, None, out, lse, H, kv_lengths=lengths,
               causal=causal)
    assert dqkv.shape == qkv.shape
    W = H * D
    got = (out, lse, dqkv[..., :W], dqkv[..., W:2 * W], dqkv[..., 2 * W:])
    ref = torch_reference(q, k, v, dout, H, kv_lengths=lengths, causal=causal)
    _check_all(got, ref, v, "fused")
    # The same numbers as separate tensors (same kernel, same tiles).
    sep_out, sep_lse = run(device, ops.attention_train, q, k, v, H, kv_lengths=lengths, causal=causal)
    sep = run(device, ops.attention_backward, dout, q, k, v, sep_out, sep_lse, H, kv_lengths=lengths,
              causal=causal)
    np.testing.assert_array_equal(np.concatenate(sep, axis=-1), dqkv)


def test_attention_train_matches_attention(device):
    q, k, v, _ = _inputs(1, 2, 45, 70, 2, 32)
    out, _ = run(device, ops.attention_train, q, k, v, 2, causal=True, causal_offset=25)
    np.testing.assert_array_equal(out, ops.attention(q, k, v, 2, causal=True, causal_offset=25, device=device))


def test_attention_backward_same_bits_any_thread_count():
    q, k, v, dout = _inputs(2, 3, 50, 50, 4, 16)
    out, lse = ops.attention_train(q, k, v, 4, causal=True)
    before = tformer.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            tformer.set_num_threads(n)
            results.append(ops.attention_backward(dout, q, k, v, out, lse, 4, causal=True))
    finally:
        tformer.set_num_threads(before)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)


def test_attention_backward_errors(device):
    q, k, v, dout = _inputs(0, 2, 5, 6, 2, 4)
    out, lse = run(device, ops.attention_train, q, k, v, 2)
    with pytest.raises(ValueError, match=r"attention_backward: lse must have shape \(2, 2, 5\), got \(2, 5\)"):
        run(device, ops.attention_backward, dout, q, k, v, out, lse[:, 0], 2)
    with pytest.raises(ValueError, match=r"attention_backward: dout must have the shape of out \(2, 5, 8\)"):
        run(device, ops.attention_backward, dout[:, :4], q, k, v, out, lse, 2)
    with pytest.raises(ValueError, match="attention_backward: k has 6 rows, v has 5"):
        run(device, ops.attention_backward, dout, q, k, v[:, :5], out, lse, 2)
    with pytest.raises(ValueError, match="attention_train: output width 8 is not divisible by 3 heads"):
        run(device, ops.attention_train, q, k, v, 3)
