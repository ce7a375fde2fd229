"""tformer.ops.linear_backward (y = x @ W^T + b) and sum_rows, against float64 NumPy:
dx = dy @ W (written, or added to a given dx), dW += dy^T @ x, db += sum over rows of dy.

Tolerance: 1e-5 * (|dy| @ |W|) for dx and 1e-5 * (|dy|^T @ |x|) for dW elementwise, the
usual float32 dot-product bound (k * eps * sum|a_i b_i| with k up to ~100); sums over
rows for db the same way.
"""

import numpy as np
import pytest
import tformer
from tformer import ops

from train_testlib import assert_close, f64, run

CASES = [  # (x shape, out_features)
    ((1, 1), 1), ((5, 3), 4), ((2, 7, 16), 24), ((130, 70), 33), ((64, 256), 512),
]


@pytest.mark.parametrize("x_shape,out_features", CASES)
def test_linear_backward(device, x_shape, out_features):
    rng = np.random.default_rng(sum(x_shape) + out_features)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((out_features, x_shape[-1])).astype(np.float32)
    dy = rng.standard_normal(x_shape[:-1] + (out_features,)).astype(np.float32)
    dx, dw, db = run(device, ops.linear_backward, dy, x, w)
    dy2, x2 = f64(dy).reshape(-1, out_features), f64(x).reshape(-1, x_shape[-1])
    assert_close(dx, f64(dy) @ f64(w), atol=1e-5 * (np.abs(f64(dy)) @ np.abs(f64(w))), what="dx")
    assert_close(dw, dy2.T @ x2, atol=1e-5 * (np.abs(dy2).T @ np.abs(x2)), what="dweight")
    assert_close(db, dy2.sum(0), atol=1e-5 * np.abs(dy2).sum(0), what="dbias")


def test_linear_backward_accumulates(device):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 6)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    dy = rng.standard_normal((9, 5)).astype(np.float32)
    dx0, dw0, db0 = [rng.standard_normal(s).astype(np.float32) for s in ((9, 6), (5, 6), (5,))]
    dx, dw, db = run(device, ops.linear_backward, dy, x, w, dx=dx0, dweight=dw0, dbias=db0)
    assert_close(dx, f64(dx0) + f64(dy) @ f64(w), atol=1e-5 * 8, what="dx")
    assert_close(dw, f64(dw0) + f64(dy).T @ f64(x), atol=1e-5 * 20, what="dweight")
    assert_close(db, f64(db0) + f64(dy).sum(0), atol=1e-5 * 20, what="dbias")
    _, _, none = run(device, ops.linear_backward, dy, x, w, with_bias=False)
    assert none is None


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (1000, 3), (70, 130), (4, 33, 257)])
def test_sum_rows(device, shape):
    rng = np.random.default_rng(shape[0])
    dy = rng.standard_normal(shape).astype(np.float32)
    init = rng.standard_normal(shape[-1]).astype(np.float32)
    out = run(device, ops.sum_rows, dy, dbias=init)
    rows = f64(dy).reshape(-1, shape[-1])
    assert_close(out, f64(init) + rows.sum(0), atol=1e-6 * (1 + np.abs(rows).sum(0)), what="sum_rows")


def test_sum_rows_same_bits_any_thread_count():
    dy = np.random.default_rng(2).standard_normal((3000, 200)).astype(np.float32)
    before = tformer.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            tformer.set_num_threads(n)
            outs.append(ops.sum_rows(dy))
    finally:
        tformer.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_linear_backward_errors(device):
    x = np.zeros((4, 6), np.float32)
    w = np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match=r"linear_backward: dy must have shape \(4, 5\), got \(4, 6\)"):
        run(device, ops.linear_backward, np.zeros((4, 6), np.float32), x, w)
    with pytest.raises(ValueError, match=r"linear_backward: x must end with 6 features, got \(4, 5\)"):
        run(device, ops.linear_backward, np.zeros((4, 5), np.float32), x[:, :5], w)
