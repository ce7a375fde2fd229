"""tformer.ops.layer_norm_train / layer_norm_backward against torch autograd in float64.

layer_norm_train returns (out, s, mean, rstd): out as ops.layer_norm, s = x + bias +
residual, and per row mean(s) and 1 / sqrt(var(s) + eps) (float32). layer_norm_backward
writes ds (or adds to a given ds) and adds to dgamma, dbeta.

Tolerances:
- mean, rstd: 1e-6 relative (a float32 two-pass mean and variance of O(1) values).
- ds: 1e-5 * max|rstd * dout * gamma| absolute. ds = rstd * (g - mean(g) - xhat *
  mean(g xhat)) subtracts O(|g|) terms; their float32 rounding (a few ulps of |g|) is
  multiplied by rstd. Case (1, 1): one column, ds is exactly 0 in float64 but
  rstd = 1/sqrt(eps) = 316 amplifies the rounding of g - mean(g) to ~7e-7.
- dgamma, dbeta: 1e-5 * (sum over rows of |dout * xhat| or |dout|) absolute: sums over
  the rows in float32 partial sums (dgamma + 1e-7 * sum|dout| for the rounding of xhat).
"""

import numpy as np
import pytest
import tformer
import torch
from tformer import ops

from norm_testlib import ds_tol, torch_sum_input
from train_testlib import assert_close, f64, run

SHAPES = [(1, 1), (3, 7), (4, 16), (17, 100), (130, 64), (2, 1023), (600, 40)]


def torch_ln(x, gamma, beta, eps, bias=None, residual=None):
    tg = torch.tensor(f64(gamma), requires_grad=True)
    tb = torch.tensor(f64(beta), requires_grad=True)
    tx, s = torch_sum_input(x, bias, residual)
    y = torch.nn.functional.layer_norm(s, (x.shape[-1],), tg, tb, eps)
    return tx, tg, tb, s, y


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    x = (1.5 * rng.standard_normal(shape) + 0.3).astype(np.float32)
    gamma = (1.0 + 0.3 * rng.standard_normal(shape[-1])).astype(np.float32)
    beta = (0.5 * rng.standard_normal(shape[-1])).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    return rng, x, gamma, beta, dout


def _grad_refs(x, gamma, beta, dout, eps=1e-5, **extra):
    tx, tg, tb, s, y = torch_ln(x, gamma, beta, eps, **extra)
    y.backward(torch.tensor(f64(dout)))
    return tx.grad.numpy(), tg.grad.numpy(), tb.grad.numpy(), s.detach().numpy()


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_train_saves_mean_rstd(device, shape):
    rng, x, gamma, beta, _ = _inputs(shape, shape[0] * 31 + shape[1])
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    residual = rng.standard_normal(shape).astype(np.float32)
    out, s, mean, rstd = run(device, ops.layer_norm_train, x, gamma, beta, eps=1e-5, bias=bias,
                             residual=residual)
    z = f64(x) + f64(bias) + f64(residual)
    assert mean.dtype == np.float32 and mean.shape == (shape[0],) and rstd.shape == (shape[0],)
    assert_close(s, z, atol=1e-6 * np.max(np.abs(z)), what="s")
    assert_close(mean, z.mean(-1), atol=1e-6 * np.max(np.abs(z)), what="mean")
    assert_close(rstd, 1 / np.sqrt(z.var(-1) + 1e-5), atol=0, rtol=1e-6 if shape[1] > 1 else 1e-5,
                 what="rstd")
    same = run(device, ops.layer_norm, x, gamma, beta, eps=1e-5, bias=bias, residual=residual)
    np.testing.assert_array_equal(out, same)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_backward(device, shape):
    _, x, gamma, beta, dout = _inputs(shape, shape[0] * 7 + shape[1])
    _, s, mean, rstd = run(device, ops.layer_norm_train, x, gamma, beta)
    ds, dgamma, dbeta = run(device, ops.layer_norm_backward, dout, s, mean, rstd, gamma)
    rdx, rdg, rdb, _ = _grad_refs(x, gamma, beta, dout)
    assert ds.dtype == np.float32 and dgamma.shape == gamma.shape
    assert_close(ds, rdx, atol=ds_tol(rstd, dout, gamma), what="ds")
    xhat = (f64(s) - f64(mean)[:, None]) * f64(rstd)[:, None]
    dout_sum = np.max(np.sum(np.abs(f64(dout)), 0))
    # + 1e-7 * dout_sum: xhat itself carries ulps of O(1) (case (1, 1): xhat = 0 here, 1e-14 in torch).
    assert_close(dgamma, rdg, atol=1e-5 * np.max(np.sum(np.abs(f64(dout) * xhat), 0)) + 1e-7 * dout_sum,
                 what="dgamma")
    assert_close(dbeta, rdb, atol=1e-5 * dout_sum, what="dbeta")


def test_layer_norm_backward_through_bias_and_residual(device):
    """The gradient of s flows unchanged to x, the residual and (summed) the bias."""
    rng, x, gamma, beta, dout = _inputs((9, 48), 3)
    bias = rng.standard_normal(48).astype(np.float32)
    residual = rng.standard_normal((9, 48)).astype(np.float32)
    _, s, mean, rstd = run(device, ops.layer_norm_train, x, gamma, beta, bias=bias, residual=residual)
    ds, dgamma, dbeta = run(device, ops.layer_norm_backward, dout, s, mean, rstd, gamma)
    rdx, rdg, rdb, _ = _grad_refs(x, gamma, beta, dout, bias=bias, residual=residual)
    assert_close(ds, rdx, atol=ds_tol(rstd, dout, gamma), what="ds")
    assert_close(dgamma, rdg, atol=1e-5 * 9 * 4, what="dgamma")
    assert_close(dbeta, rdb, atol=1e-5 * 9 * 4, what="dbeta")


def test_layer_norm_backward_accumulates(device):
    """ds given: the gradient is added to it; dgamma / dbeta are always added to."""
    rng, x, gamma, beta, dout = _inputs((20, 33), 4)
    _, s, mean, rstd = run(device, ops.layer_norm_train, x, gamma, beta)
    ds0, dg0, db0 = run(device, ops.layer_norm_backward, dout, s, mean, rstd, gamma)
    init_ds = rng.standard_normal((20, 33)).astype(np.float32)
    init_dg = rng.standard_normal(33).astype(np.float32)
    init_db = rng.standard_normal(33).astype(np.float32)
    ds, dg, db = run(device, ops.layer_norm_backward, dout, s, mean, rstd, gamma, ds=init_ds,
                     dgamma=init_dg, dbeta=init_db)
    assert_close(ds, f64(init_ds) + ds0, atol=1e-6 * np.max(np.abs(ds0)), what="ds")
    assert_close(dg, f64(init_dg) + dg0, atol=1e-6 * np.max(np.abs(dg0)), what="dgamma")
    assert_close(db, f64(init_db) + db0, atol=1e-6 * np.max(np.abs(db0)), what="dbeta")
    only_ds = run(device, ops.layer_norm_backward, dout, s, mean, rstd, gamma, param_grads=False)
    np.testing.assert_array_equal(only_ds, ds0)


def test_layer_norm_backward_same_bits_any_thread_count():
    """dgamma / dbeta are reduced over fixed row groups: no dependence on threads."""
    _, x, gamma, beta, dout = _inputs((1000, 96), 5)
    _, s, mean, rstd = ops.layer_norm_train(x, gamma, beta)
    before = tformer.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            tformer.set_num_threads(n)
            results.append(ops.layer_norm_backward(dout, s, mean, rstd, gamma))
    finally:
        tformer.set_num_threads(before)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(a, b)


def test_layer_norm_backward_errors(device):
    _, x, gamma, beta, dout = _inputs((4, 8), 6)
    _, s, mean, rstd = run(device, ops.layer_norm_train, x, gamma, beta)
    with pytest.raises(ValueError, match=r"layer_norm_backward: dout must have the shape of s \(4, 8\)"):
        run(device, ops.layer_norm_backward, dout[:, :4], s, mean, rstd, gamma)
    with pytest.raises(ValueError, match=r"layer_norm_backward: mean must have shape \(4,\), got \(3,\)"):
        run(device, ops.layer_norm_backward, dout, s, mean[:3], rstd, gamma)
    with pytest.raises(ValueError, match=r"layer_norm_backward: gamma must have shape \(8,\)"):
        run(device, ops.layer_norm_backward, dout, s, mean, rstd, gamma[:5])
