"""tformer.ops.rms_norm: T5's RMSNorm, s / sqrt(mean(s^2) + eps) * gamma with
s = x + bias + residual (no mean subtracted, no beta), against float64 NumPy.

Tolerance: |out - ref| <= 1e-5 * (|ref| + max|ref|), as test_layer_norm.py: the outputs
are O(1) and the fp32 sum of s rounds by an ulp of its terms.
"""

import numpy as np
import pytest
from tformer import ops

from norm_testlib import check_norm

# Widths below, at and past multiples of the 8- and 16-lane vectors, and wide rows.
SHAPES = [(1, 1), (1, 7), (4, 16), (3, 17), (3, 64), (17, 100), (2, 1023), (5, 1024)]
EXTRAS = [(False, False), (True, False), (False, True), (True, True)]  # bias, residual


def rms_ref(z, gamma, eps):
    z = z.astype(np.float64)
    ms = (z * z).mean(axis=-1, keepdims=True)
    return z / np.sqrt(ms + eps) * gamma.astype(np.float64)


def _inputs(seed, shape, with_bias=False, with_residual=False):
    rng = np.random.default_rng(seed)
    # A mean far from 0: LayerNorm would subtract it, RMSNorm must not.
    x = (1.5 * rng.standard_normal(shape) + 0.8).astype(np.float32)
    gamma = (1.0 + 0.3 * rng.standard_normal(shape[-1])).astype(np.float32)
    bias = rng.standard_normal(shape[-1]).astype(np.float32) if with_bias else None
    residual = rng.standard_normal(shape).astype(np.float32) if with_residual else None
    z = x.astype(np.float64)
    if with_bias:
        z = z + bias
    if with_residual:
        z = z + residual
    return x, gamma, bias, residual, z


@pytest.mark.parametrize("with_bias,with_residual", EXTRAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm(device, shape, with_bias, with_residual):
    x, gamma, bias, residual, z = _inputs(shape[0] * 7 + shape[1], shape, with_bias, with_residual)
    out = ops.rms_norm(x, gamma, eps=1e-6, bias=bias, residual=residual, device=device)
    check_norm(out, rms_ref(z, gamma, 1e-6), f"{shape} bias={with_bias} res={with_residual}")


def test_rms_norm_is_not_layer_norm(device):
    """Rows with a large mean: RMSNorm keeps it (LayerNorm would give mean 0 rows)."""
    x, gamma, _, _, z = _inputs(3, (4, 32))
    x = x + 5.0
    out = ops.rms_norm(x, gamma, device=device)
    check_norm(out, rms_ref(x, gamma, 1e-6))
    ln = ops.layer_norm(x, gamma, np.zeros(32, np.float32), eps=1e-6, device=device)
    assert np.max(np.abs(out - ln)) > 0.5


def test_rms_norm_3d(device):
    """(batch, len, d_model) inputs: rows are the leading dimensions flattened."""
    x, gamma, _, residual, z = _inputs(4, (2, 5, 24), with_residual=True)
    out = ops.rms_norm(x, gamma, residual=residual, device=device)
    check_norm(out, rms_ref(z, gamma, 1e-6))


@pytest.mark.parametrize("with_bias,with_residual", EXTRAS)
def test_rms_norm_return_sum(device, with_bias, with_residual):
    shape = (6, 40)
    x, gamma, bias, residual, z = _inputs(21, shape, with_bias, with_residual)
    result = ops.rms_norm(x, gamma, bias=bias, residual=residual, return_sum=True, device=device)
    assert isinstance(result, tuple) and len(result) == 2, type(result)
    out, total = result
    assert total.dtype == np.float32 and total.shape == shape
    # An fp32 add of two or three fp32 terms: two ulps of the largest.
    np.testing.assert_allclose(total.astype(np.float64), z, rtol=0,
                               atol=float(np.max(np.abs(z))) * 2.5e-7)
    check_norm(out, rms_ref(z, gamma, 1e-6))


@pytest.mark.parametrize("eps", [1e-12, 1e-6, 0.5])
def test_rms_norm_eps(device, eps):
    """eps = 0.5 is comparable to mean(s^2), so it must be added inside the sqrt."""
    rng = np.random.default_rng(22)
    x = (0.7 * rng.standard_normal((5, 33))).astype(np.float32)
    gamma = (1.0 + 0.3 * rng.standard_normal(33)).astype(np.float32)
    check_norm(ops.rms_norm(x, gamma, eps=eps, device=device), rms_ref(x, gamma, eps), f"eps={eps}")


def test_rms_norm_default_eps_is_1e_6(device):
    """T5's layer_norm_epsilon; rows of mean square 1e-6 make the choice visible."""
    rng = np.random.default_rng(23)
    x = (1e-3 * rng.standard_normal((3, 24))).astype(np.float32)
    gamma = np.ones(24, np.float32)
    out = ops.rms_norm(x, gamma, device=device)
    check_norm(out, rms_ref(x, gamma, 1e-6))
    assert np.max(np.abs(out - rms_ref(x, gamma, 1e-5))) > 1e-2


def test_rms_norm_zero_row(device):
    """A zero row gives zeros (eps keeps the division finite)."""
    out = ops.rms_norm(np.zeros((2, 8), np.float32), np.ones(8, np.float32), device=device)
    assert np.all(out == 0.0)


def test_rms_norm_gamma_length_mismatch(device):
    with pytest.raises(ValueError, match=r"rms_norm: gamma must have shape \(8,\), got \(9,\)"):
        ops.rms_norm(np.ones((2, 8), np.float32), np.ones(9, np.float32), device=device)


def test_rms_norm_bias_length_mismatch(device):
    with pytest.raises(ValueError, match=r"rms_norm: bias must have shape \(8,\), got \(7,\)"):
        ops.rms_norm(np.ones((2, 8), np.float32), np.ones(8, np.float32),
                     bias=np.ones(7, np.float32), device=device)


def test_rms_norm_residual_shape_mismatch(device):
    with pytest.raises(ValueError, match=r"rms_norm: residual must have the shape of x"):
        ops.rms_norm(np.ones((2, 8), np.float32), np.ones(8, np.float32),
                     residual=np.ones((3, 8), np.float32), device=device)


def test_rms_norm_negative_eps(device):
    with pytest.raises(ValueError, match=r"rms_norm: eps must be >= 0"):
        ops.rms_norm(np.ones((2, 8), np.float32), np.ones(8, np.float32), eps=-1.0, device=device)
