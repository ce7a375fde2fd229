"""tformer.ops.rms_norm_train / rms_norm_backward against torch autograd in float64.

RMSNorm (T5): out = s / sqrt(mean(s^2) + eps) * gamma, s = x + bias + residual, no centring
and no beta. rms_norm_train returns (out, s, rstd); rms_norm_backward writes ds (or adds to
a given ds) and adds to dgamma.

Tolerances:
- rstd: 1e-6 relative (a float32 sum of squares of O(1) values).
- out: 1e-6 * max|s * rstd * gamma| absolute.
- ds: 1e-5 * max|rstd * dout * gamma| absolute: ds = rstd * (g - xhat * mean(g xhat))
  subtracts O(|g|) terms, whose float32 rounding is multiplied by rstd.
- dgamma: 1e-5 * (sum over rows of |dout * xhat|) + 1e-7 * sum|dout| (xhat's own ulps).
"""

import numpy as np
import pytest
import torch
from tformer import ops

from norm_testlib import ds_tol, torch_sum_input
from train_testlib import assert_close, f64, run

SHAPES = [(1, 1), (3, 7), (4, 16), (17, 100), (130, 64), (2, 1023), (600, 40)]


def torch_rms(x, gamma, eps, bias=None, residual=None):
    tg = torch.tensor(f64(gamma), requires_grad=True)
    tx, s = torch_sum_input(x, bias, residual)
    y = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps) * tg
    return tx, tg, s, y


def _inputs(shape, seed):
    rng = np.random.default_rng(seed)
    x = (1.5 * rng.standard_normal(shape) + 0.3).astype(np.float32)
    gamma = (1.0 + 0.3 * rng.standard_normal(shape[-1])).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    return rng, x, gamma, dout


@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm_train_saves_rstd(device, shape):
    rng, x, gamma, _ = _inputs(shape, shape[0] * 31 + shape[1])
    bias = rng.standard_normal(shape[1]).astype(np.float32)
    residual = rng.standard_normal(shape).astype(np.float32)
    out, s, rstd = run(device, ops.rms_norm_train, x, gamma, eps=1e-6, bias=bias, residual=residual)
    z = f64(x) + f64(bias) + f64(residual)
    ref_rstd = 1 / np.sqrt((z * z).mean(-1) + 1e-6)
    assert rstd.dtype == np.float32 and rstd.shape == (shape[0],)
    assert_close(s, z, atol=1e-6 * np.max(np.abs(z)), what="s")
    assert_close(rstd, ref_rstd, atol=0, rtol=1e-6, what="rstd")
    ref = z * ref_rstd[:, None] * f64(gamma)
    assert_close(out, ref, atol=1e-6 * np.max(np.abs(ref)), what="out")


@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm_backward(device, shape):
    _, x, gamma, dout = _inputs(shape, shape[0] * 7 + shape[1])
    _, s, rstd = run(device, ops.rms_norm_train, x, gamma, eps=1e-6)
    ds, dgamma = run(device, ops.rms_norm_backward, dout, s, rstd, gamma)
    tx, tg, _, y = torch_rms(x, gamma, 1e-6)
    y.backward(torch.tensor(f64(dout)))
    assert ds.dtype == np.float32 and dgamma.shape == gamma.shape
    assert_close(ds, tx.grad.numpy(), atol=ds_tol(rstd, dout, gamma), what="ds")
    xhat = f64(s) * f64(rstd)[:, None]
    dout_sum = np.max(np.sum(np.abs(f64(dout)), 0))
    assert_close(dgamma, tg.grad.numpy(), atol=1e-5 * np.max(np.sum(np.abs(f64(dout) * xhat), 0)) + 1e-7 * dout_sum,
                 what="dgamma")


def test_rms_norm_backward_through_bias_and_residual(device):
    """The gradient of s flows unchanged to x and the residual."""
    rng, x, gamma, dout = _inputs((9, 48), 3)
    bias = rng.standard_normal(48).astype(np.float32)
    residual = rng.standard_normal((9, 48)).astype(np.float32)
    _, s, rstd = run(device, ops.rms_norm_train, x, gamma, eps=1e-6, bias=bias, residual=residual)
    ds, dgamma = run(device, ops.rms_norm_backward, dout, s, rstd, gamma)
    tx, tg, _, y = torch_rms(x, gamma, 1e-6, bias=bias, residual=residual)
    y.backward(torch.tensor(f64(dout)))
    assert_close(ds, tx.grad.numpy(), atol=ds_tol(rstd, dout, gamma), what="ds")
    assert_close(dgamma, tg.grad.numpy(), atol=1e-5 * 9 * 4, what="dgamma")


def test_rms_norm_backward_accumulates(device):
    """ds given: the gradient is added to it; dgamma is always added to."""
    rng, x, gamma, dout = _inputs((20, 33), 4)
    _, s, rstd = run(device, ops.rms_norm_train, x, gamma)
    ds0, dg0 = run(device, ops.rms_norm_backward, dout, s, rstd, gamma)
    init_ds = rng.standard_normal((20, 33)).astype(np.float32)
    init_dg = rng.standard_normal(33).astype(np.float32)
    ds, dg = run(device, ops.rms_norm_backward, dout, s, rstd, gamma, ds=init_ds, dgamma=init_dg)
    assert_close(ds, f64(init_ds) + ds0, atol=1e-6 * np.max(np.abs(ds0)), what="ds")
    assert_close(dg, f64(init_dg) + dg0, atol=1e-6 * np.max(np.abs(dg0)), what="dgamma")
    only_ds = run(device, ops.rms_norm_backward, dout, s, rstd, gamma, param_grads=False)
    np.testing.assert_array_equal(only_ds, ds0)


def test_rms_norm_errors(device):
    _, x, gamma, dout = _inputs((4, 8), 6)
    _, s, rstd = run(device, ops.rms_norm_train, x, gamma)
    with pytest.raises(ValueError, match=r"rms_norm_train: gamma must have shape \(8,\), got \(5,\)"):
        run(device, ops.rms_norm_train, x, gamma[:5])
    with pytest.raises(ValueError, match=r"rms_norm_train: eps must be >= 0, got -1"):
        run(device, ops.rms_norm_train, x, gamma, eps=-1.0)
    with pytest.raises(ValueError, match=r"rms_norm_backward: dout must have the shape of s \(4, 8\)"):
        run(device, ops.rms_norm_backward, dout[:, :4], s, rstd, gamma)
    with pytest.raises(ValueError, match=r"rms_norm_backward: rstd must have shape \(4,\), got \(3,\)"):
        run(device, ops.rms_norm_backward, dout, s, rstd[:3], gamma)
    with pytest.raises(ValueError, match=r"rms_norm_backward: gamma must have shape \(8,\)"):
        run(device, ops.rms_norm_backward, dout, s, rstd, gamma[:5])
