"""Paged K/V attention (AttentionParams::block_table) and scatter_rows.

Contract (tformer/ops/attention.h): with block_table (int32 (batch, blocks_per_row)), k and v
are pools (num_blocks, block_size, width) and key j of row b is
k[block_table[b, j // block_size], j % block_size]; q_len 1, kv_group 1, kv_lengths required;
table entries past kv_lengths[b] are never read (they may be -1); rows may share blocks. A row's
arithmetic equals the contiguous one-query path's on the same keys, bit for bit (the CPU and
the decode kernel of CUDA walk the same rows with the same code). rel_bias_origins (int32
(batch)) gives each row its own rel-bias origin (the rows of an engine step sit at different
positions).

References: float64 NumPy (check_attention's tolerance) and the contiguous path of the same op
on the same keys gathered out of the pool (bit-equal).
"""

import numpy as np
import pytest
from tformer import ops

from attention_testlib import check_attention


def paged_case(seed, lengths, block_size, H, D, share_prefix=False, extra_blocks=3):
    """(q, k_pool, v_pool, table, k_contiguous, v_contiguous): every row's blocks scattered over
    a pool in shuffled order, -1 past each row's length; with share_prefix, rows 0 and 1 share
    the full blocks of row 0's prefix (beams of one source); the contiguous copies hold garbage
    past each length (masked, never read)."""
    rng = np.random.default_rng(seed)
    B, W = len(lengths), H * D
    per_row = [-(-n // block_size) for n in lengths]
    blocks_per_row = max(max(per_row), 1)
    shared = min(lengths[0], lengths[1]) // block_size if share_prefix else 0
    num_blocks = sum(per_row) - shared + extra_blocks
    ids = rng.permutation(num_blocks).astype(np.int32)
    table = np.full((B, blocks_per_row), -1, dtype=np.int32)
    next_id = 0
    for b, n in enumerate(per_row):
        for x in range(n):
            if b == 1 and x < shared:
                table[b, x] = table[0, x]
            else:
                table[b, x] = ids[next_id]
                next_id += 1
    k_pool = rng.standard_normal((num_blocks, block_size, W)).astype(np.float32)
    v_pool = rng.standard_normal((num_blocks, block_size, W)).astype(np.float32)
    q = rng.standard_normal((B, 1, W)).astype(np.float32)
    kv_len = blocks_per_row * block_size
    kc = (100 * rng.standard_normal((B, kv_len, W))).astype(np.float32)  # garbage past the length
    vc = (100 * rng.standard_normal((B, kv_len, W))).astype(np.float32)
    for b, n in enumerate(lengths):
        for j in range(n):
            blk, r = table[b, j // block_size], j % block_size
            kc[b, j], vc[b, j] = k_pool[blk, r], v_pool[blk, r]
    return q, k_pool, v_pool, table, kc, vc


def reference(q, kc, vc, H, lengths, rel_bias=None, origins=None):
    """float64 (out (B, 1, W), weights (B, 1, kv_len)) of one query per row."""
    B, _, W = q.shape
    D = W // H
    kv_len = kc.shape[1]
    out = np.zeros((B, 1, W))
    weights = np.zeros((B, 1, kv_len))
    for b, n in enumerate(lengths):
        qh = q[b, 0].astype(np.float64).reshape(H, D)
        kh = kc[b, :n].astype(np.float64).reshape(n, H, D)
        vh = vc[b, :n].astype(np.float64).reshape(n, H, D)
        s = np.einsum("hd,jhd->hj", qh, kh) * D ** -0.5
        if rel_bias is not None:
            s = s + rel_bias.astype(np.float64)[origins[b] + np.arange(n)].T
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[b, 0] = np.einsum("hj,jhd->hd", p, vh).reshape(W)
        weights[b, 0, :n] = p.mean(axis=0)
    return out, weights


def paged(device, q, k_pool, v_pool, table, lengths, H, **kw):
    return ops.attention(q, k_pool, v_pool, H, kv_lengths=np.asarray(lengths, dtype=np.int32),
                         block_table=table, block_size=k_pool.shape[1], device=device, **kw)


def contiguous(device, q, kc, vc, lengths, H, **kw):
    return ops.attention(q, kc, vc, H, kv_lengths=np.asarray(lengths, dtype=np.int32), device=device, **kw)


@pytest.mark.parametrize("block_size", [1, 16, 32])
@pytest.mark.parametrize("H,D", [(2, 8), (3, 13), (4, 64)])
def test_paged_equals_contiguous_and_reference(device, block_size, H, D):
    """Shuffled block ids, a block shared by two rows, -1 past the lengths, lengths crossing
    block boundaries (and the prefetch distance): bit-equal to the contiguous path, and within
    tolerance of float64."""
    lengths = [37, 33, 1, 16, 70]
    q, kp, vp, table, kc, vc = paged_case(block_size + D, lengths, block_size, H, D, share_prefix=True)
    if block_size < 37:
        assert (table[0, :1] == table[1, :1]).all() and (table == -1).any()
    got = paged(device, q, kp, vp, table, lengths, H)
    want = contiguous(device, q, kc, vc, lengths, H)
    assert np.array_equal(got, want), np.max(np.abs(got - want))
    ref, _ = reference(q, kc, vc, H, lengths)
    check_attention(got, ref, vc, f"paged bs={block_size} H={H} D={D}")


@pytest.mark.parametrize("block_size", [1, 16])
def test_paged_weights_out(device, block_size):
    """Alignments (weights_out): (batch, 1, blocks_per_row * block_size), 0 past each length,
    bit-equal to the contiguous path's."""
    lengths = [5, 20, 17]
    H = 3
    q, kp, vp, table, kc, vc = paged_case(7, lengths, block_size, H, 8)
    out, w = paged(device, q, kp, vp, table, lengths, H, return_weights=True)
    out_c, w_c = contiguous(device, q, kc, vc, lengths, H, return_weights=True)
    assert w.shape == (3, 1, table.shape[1] * block_size)
    assert np.array_equal(out, out_c) and np.array_equal(w, w_c)
    ref, ref_w = reference(q, kc, vc, H, lengths)
    check_attention(out, ref, vc, "paged weights_out")
    assert np.max(np.abs(w - ref_w)) <= 1e-5
    assert (w[1, 0, 20:] == 0).all()


@pytest.mark.parametrize("block_size", [1, 16])
def test_paged_rel_bias_per_row_origins(device, block_size):
    """T5 decoder self-attention in an engine step: each row at its own position, its own
    origin; equal bit for bit to the contiguous path called row by row with a scalar origin,
    and to float64 with the per-row origins."""
    lengths = [9, 30, 2, 17]
    H, D, span = 2, 16, 40
    q, kp, vp, table, kc, vc = paged_case(11, lengths, block_size, H, D)
    bias = (2.0 * np.random.default_rng(5).standard_normal((span, H))).astype(np.float32)
    origins = np.array([span - n for n in lengths], dtype=np.int32)
    got = paged(device, q, kp, vp, table, lengths, H, rel_bias=bias, rel_bias_origins=origins)
    for b, n in enumerate(lengths):
        # kv_len n: the scalar origin's bound check covers every key of the call
        row = contiguous(device, q[b:b + 1], kc[b:b + 1, :n], vc[b:b + 1, :n], [n], H, rel_bias=bias,
                         rel_bias_origin=int(origins[b]))
        assert np.array_equal(got[b:b + 1], row), b
    ref, _ = reference(q, kc, vc, H, lengths, bias, origins)
    check_attention(got, ref, vc, "paged rel_bias")
    plain, _ = reference(q, kc, vc, H, lengths)
    assert np.max(np.abs(plain - ref)) > 1e-2  # the bias matters here
    # Per-row origins work on contiguous K/V too (the same rows, one call).
    both = contiguous(device, q, kc, vc, lengths, H, rel_bias=bias, rel_bias_origins=origins)
    assert np.array_equal(both, got)


def test_paged_row_without_keys(device):
    """A row of length 0 (all its entries -1) gets zeros, the others are unaffected."""
    lengths = [0, 5]
    q, kp, vp, table, kc, vc = paged_case(3, [1, 5], 4, 2, 8)
    table[0, :] = -1
    got = paged(device, q, kp, vp, table, lengths, 2)
    assert (got[0] == 0).all()
    assert np.array_equal(got[1:], contiguous(device, q[1:], kc[1:], vc[1:], [5], 2))


def test_paged_thread_count_invariant():
    """The same bits with 1 and 2 threads (a row's result never depends on the others')."""
    import tformer
    lengths = [64, 300, 7, 128]
    q, kp, vp, table, kc, vc = paged_case(1, lengths, 16, 8, 64)
    before = tformer.get_num_threads()
    try:
        tformer.set_num_threads(1)
        one = paged("cpu", q, kp, vp, table, lengths, 8)
        tformer.set_num_threads(2)
        two = paged("cpu", q, kp, vp, table, lengths, 8)
    finally:
        tformer.set_num_threads(before)
    assert np.array_equal(one, two)
    alone = paged("cpu", q[1:2], kp, vp, table[1:2], lengths[1:2], 8)
    assert np.array_equal(alone, one[1:2])


# ---- errors: every bad argument a clear ValueError naming the problem

def _error_case():
    q, kp, vp, table, kc, vc = paged_case(0, [5, 9], 4, 2, 8)
    return q, kp, vp, table, np.array([5, 9], dtype=np.int32)


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(q=np.concatenate([a["q"], a["q"]], axis=1)), "needs q_len 1"),
    (lambda a: a.update(kv_lengths=None), "needs kv_lengths"),
    (lambda a: a.update(block_size=0), "block_size must be >= 1"),
    (lambda a: a.update(block_size=2), "pools (num_blocks, block_size 2"),
    (lambda a: a.update(block_table=a["block_table"][:1]), "block_table must be (2, blocks_per_row)"),
    (lambda a: a.update(block_table=a["block_table"][:, :, None]), "block_table must be (2, blocks_per_row)"),
    (lambda a: a.update(v=a["v"][:, :, :8]), "paged k and v must both be pools"),
    (lambda a: a.update(kv_group=2, q=np.concatenate([a["q"], a["q"]])), "needs kv_group 1"),
])
def test_paged_errors(device, change, message):
    q, kp, vp, table, lengths = _error_case()
    a = dict(q=q, k=kp, v=vp, block_table=table, block_size=4, kv_lengths=lengths)
    change(a)
    if a.get("kv_group") == 2:
        a["block_table"] = np.concatenate([table, table])
        a["kv_lengths"] = np.concatenate([lengths, lengths])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ops.attention(a.pop("q"), a.pop("k"), a.pop("v"), 2, device=device, **a)


def test_block_size_without_table(device):
    q, kp, vp, table, lengths = _error_case()
    with pytest.raises(ValueError, match="block_size 4 given without a block_table"):
        ops.attention(q, kp[:2], vp[:2], 2, kv_lengths=lengths, block_size=4, device=device)


def test_rel_bias_origins_errors(device):
    q, kp, vp, table, lengths = _error_case()
    bias = np.zeros((20, 2), dtype=np.float32)
    kw = dict(kv_lengths=lengths, block_table=table, block_size=4, device=device)
    with pytest.raises(ValueError, match="rel_bias_origins given without rel_bias"):
        ops.attention(q, kp, vp, 2, rel_bias_origins=np.array([0, 0], np.int32), **kw)
    with pytest.raises(ValueError, match=r"rel_bias_origins must have shape \(2,\)"):
        ops.attention(q, kp, vp, 2, rel_bias=bias, rel_bias_origins=np.array([0, 0, 0], np.int32), **kw)
    k = np.zeros((2, 3, 16), np.float32)
    with pytest.raises(ValueError, match="rel_bias_origins needs q_len 1"):
        ops.attention(np.zeros((2, 3, 16), np.float32), k, k, 2, rel_bias=bias,
                      rel_bias_origins=np.array([0, 0], np.int32), device=device)


# ---- scatter_rows

@pytest.mark.parametrize("src_3d", [False, True])
def test_scatter_rows_matches_numpy(device, src_3d):
    """The pool's write: each decode row's new K (or V) into its slot, columns [col, col+cols)."""
    rng = np.random.default_rng(2)
    # The pool (num_blocks 6, block_size 4, 2A = 10) as rows: (num_blocks * block_size, 2A).
    dst = rng.standard_normal((24, 10)).astype(np.float32)
    src = rng.standard_normal((3, 1, 12) if src_3d else (3, 12)).astype(np.float32)
    slots = np.array([13, 0, 23], dtype=np.int32)  # block * block_size + position % block_size
    got = ops.scatter_rows(dst, 5, slots, src, 2, 5, device=device)
    want = dst.copy()
    want[slots, 5:10] = src.reshape(3, 12)[:, 2:7]
    assert np.array_equal(got, want)


def test_scatter_rows_errors(device):
    dst = np.zeros((4, 8), np.float32)
    src = np.ones((2, 8), np.float32)
    rows = np.array([1, 2], np.int32)
    with pytest.raises(ValueError, match=r"dst_rows \(one per src row\) must have shape \(2,\)"):
        ops.scatter_rows(dst, 0, rows[:1], src, 0, 8, device=device)
    with pytest.raises(ValueError, match="out of range"):
        ops.scatter_rows(dst, 4, rows, src, 0, 5, device=device)
    with pytest.raises(ValueError, match="out of range"):
        ops.scatter_rows(dst, 0, rows, src, 0, -1, device=device)
    with pytest.raises(ValueError, match=r"src must be \(rows, width\) or \(rows, 1, width\)"):
        ops.scatter_rows(dst, 0, rows, np.ones((2, 2, 4), np.float32), 0, 4, device=device)


def test_scatter_rows_bad_index():
    """On the CPU a destination outside the rows is a ValueError and nothing is written (on
    CUDA the kernel cannot raise: such a row is skipped)."""
    dst = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"dst_rows\[1\] = 4 out of range \[0, 4\)"):
        ops.scatter_rows(dst, 0, np.array([1, 4], np.int32), np.ones((2, 8), np.float32), 0, 8)
