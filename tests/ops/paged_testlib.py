"""Helpers of test_paged_attention.py (no torch import: its ISA subprocesses load this alone):
a paged K/V case with its contiguous twin, the float64 reference, and the two calls."""

import numpy as np
from tformer import ops


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


def bit_equal_cases(block_sizes=(1, 16, 32), shapes=((2, 8), (3, 13), (4, 64))):
    """Paged vs contiguous, bit for bit, over block sizes and (heads, head_dim), with a shared
    block, weights_out and per-row rel-bias origins; returns the failures."""
    failures = []
    lengths = [37, 33, 1, 16, 70]
    for bs in block_sizes:
        for H, D in shapes:
            q, kp, vp, table, kc, vc = paged_case(bs + D, lengths, bs, H, D, share_prefix=True)
            got, w = paged("cpu", q, kp, vp, table, lengths, H, return_weights=True)
            want, w_c = contiguous("cpu", q, kc, vc, lengths, H, return_weights=True)
            if not (np.array_equal(got, want) and np.array_equal(w, w_c)):
                failures.append(f"bs={bs} H={H} D={D}")
            span = 80
            bias = np.linspace(-2, 2, span * H, dtype=np.float32).reshape(span, H)
            origins = np.array([span - n for n in lengths], dtype=np.int32)
            got = paged("cpu", q, kp, vp, table, lengths, H, rel_bias=bias, rel_bias_origins=origins)
            for b, n in enumerate(lengths):
                row = contiguous("cpu", q[b:b + 1], kc[b:b + 1, :n], vc[b:b + 1, :n], [n], H, rel_bias=bias,
                                 rel_bias_origin=int(origins[b]))
                if not np.array_equal(got[b:b + 1], row):
                    failures.append(f"rel_bias bs={bs} H={H} D={D} row {b}")
    return failures
