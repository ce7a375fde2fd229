"""tformer.ops.dropout: inverted dropout whose mask is a pure function of
(seed, offset + i). Element i is kept when a counter-based uniform draw is >= p, and
then scaled by 1 / (1 - p); the backward is dropout(grad, p, seed, offset).

The statistical checks use 5-sigma bounds on a million draws (binomial standard
deviation sqrt(q (1 - q) / n)), so a correct generator fails them about once in 3.5
million runs; the draws are deterministic, so a pass is a pass for good.
"""

import numpy as np
import pytest
import tformer
from tformer import ops

from train_testlib import assert_close, f64, run

N = 1_000_000


def _sigma5(q, n):
    return 5 * np.sqrt(q * (1 - q) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keep_rate_and_scale(device, p):
    x = np.random.default_rng(0).uniform(0.5, 2.0, N).astype(np.float32)  # never 0
    out = run(device, ops.dropout, x, p, seed=1234)
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) <= _sigma5(1 - p, N), kept.mean()
    # Kept values are x / (1 - p) up to the rounding of x * float32(1 / (1 - p)).
    assert_close(out[kept], f64(x[kept]) / (1 - p), atol=0, rtol=3e-7, what="kept values")
    # Neighbours are independent: both kept with probability (1 - p)^2.
    both = (kept[1:] & kept[:-1]).mean()
    assert abs(both - (1 - p) ** 2) <= _sigma5((1 - p) ** 2, N - 1) * 1.5, both


def test_dropout_same_seed_offset_same_mask(device):
    x = np.ones(10_000, np.float32)
    a = run(device, ops.dropout, x, 0.3, seed=7, offset=100)
    b = run(device, ops.dropout, x, 0.3, seed=7, offset=100)
    np.testing.assert_array_equal(a, b)


def test_dropout_offset_shifts_the_counter(device):
    """Element i depends on offset + i only: offset 37 is offset 0 moved by 37 elements,
    so consecutive calls with advancing offsets draw fresh, non-overlapping masks."""
    x = np.ones(5000, np.float32)
    base = run(device, ops.dropout, x, 0.5, seed=99, offset=0)
    shifted = run(device, ops.dropout, x[:5000 - 37], 0.5, seed=99, offset=37)
    np.testing.assert_array_equal(shifted, base[37:])
    other = run(device, ops.dropout, x, 0.5, seed=99, offset=5000)
    agree = ((other != 0) == (base != 0)).mean()
    assert abs(agree - 0.5) <= _sigma5(0.5, 5000), agree  # independent masks agree half the time


def test_dropout_different_seeds_independent(device):
    x = np.ones(N, np.float32)
    a = run(device, ops.dropout, x, 0.2, seed=1) != 0
    b = run(device, ops.dropout, x, 0.2, seed=2) != 0
    expected = 0.8 * 0.8 + 0.2 * 0.2
    assert abs((a == b).mean() - expected) <= _sigma5(expected, N)


def test_dropout_backward_regenerates_the_mask(device):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 257)).astype(np.float32)
    x[x == 0] = 1.0
    grad = rng.standard_normal((64, 257)).astype(np.float32)
    grad[grad == 0] = 1.0
    out = run(device, ops.dropout, x, 0.25, seed=5, offset=1 << 33)
    dx = run(device, ops.dropout, grad, 0.25, seed=5, offset=1 << 33)
    np.testing.assert_array_equal(out == 0, dx == 0)
    kept = dx != 0
    assert_close(dx[kept], f64(grad[kept]) / 0.75, atol=0, rtol=3e-7, what="dx")


def test_dropout_p0_identity_p1_zeros(device):
    x = np.random.default_rng(4).standard_normal((3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(run(device, ops.dropout, x, 0.0, seed=1), x)
    np.testing.assert_array_equal(run(device, ops.dropout, x, 1.0, seed=1), np.zeros_like(x))


def test_dropout_same_mask_any_thread_count():
    x = np.ones(300_000, np.float32)
    before = tformer.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            tformer.set_num_threads(n)
            outs.append(ops.dropout(x, 0.4, seed=11, offset=3))
    finally:
        tformer.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_dropout_errors(device):
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got -0.1"):
        run(device, ops.dropout, x, -0.1, seed=0)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got nan"):
        run(device, ops.dropout, x, float("nan"), seed=0)
