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

import os
import subprocess
import sys

import numpy as np
import pytest
from tformer import ops

from attention_testlib import check_attention
from paged_testlib import bit_equal_cases, contiguous, paged, paged_case, reference


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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("H,D", [(4, 64), (3, 13)])  # 16-byte loads, element loads
def test_paged_half_precision_cuda(dtype, H, D):
    """f16 / bf16 storage (CUDA only; the CPU attention is float32): the decode kernel reads
    paged rows exactly as contiguous ones, bit for bit, with and without a rel bias."""
    import tformer
    if not tformer.cuda_available():
        pytest.skip("tformer.cuda_available() is False")
    lengths = [37, 20, 1]
    q, kp, vp, table, kc, vc = paged_case(D, lengths, 16, H, D, share_prefix=True)
    got = paged("cuda", q, kp, vp, table, lengths, H, dtype=dtype)
    assert np.array_equal(got, contiguous("cuda", q, kc, vc, lengths, H, dtype=dtype))
    bias = np.linspace(-2, 2, 80 * H, dtype=np.float32).reshape(80, H)
    origins = np.array([80 - n for n in lengths], dtype=np.int32)
    got = paged("cuda", q, kp, vp, table, lengths, H, dtype=dtype, rel_bias=bias, rel_bias_origins=origins)
    assert np.array_equal(got, contiguous("cuda", q, kc, vc, lengths, H, dtype=dtype, rel_bias=bias,
                                          rel_bias_origins=origins))
    ref, _ = reference(q, kc, vc, H, lengths, bias, origins)
    assert np.max(np.abs(got - ref)) < (3e-2 if dtype == "bfloat16" else 5e-3)


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


# The bit-equality cases again in a process whose kernels are the AVX2 or the baseline build
# (the build is chosen once per process; this one runs the best the CPU has).
ISA_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
from tformer._native import _core
import paged_testlib
print(paged_testlib.bit_equal_cases())
print(_core.blas_info().rsplit(" ", 1)[-1])
"""


@pytest.mark.parametrize("isa", ["avx2", "base"])
def test_paged_bit_equal_in_each_isa_build(isa):
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if isa == "avx2" and not (" avx2" in flags and " fma" in flags):
        pytest.skip("this CPU has no avx2")  # the baseline case always runs
    env = dict(os.environ, TFORMER_CPU_ISA=isa, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", ISA_CHECK, os.path.dirname(__file__)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    failures, chosen = out.stdout.strip().splitlines()[-2:]
    assert chosen == isa
    assert failures == "[]", failures


def test_paged_bit_equal_cases_here():
    """The same check in this process (the best build the CPU has), so the check itself runs."""
    assert bit_equal_cases() == []


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
