"""tformer.ops.layer_norm: LN(x + bias + residual) * gamma + beta, against float64 NumPy
(biased variance, eps inside the square root, as torch.nn.LayerNorm).

Tolerance: |out - ref| <= 1e-5 * (|ref| + max|ref|). The normalised values are O(1); the
fp32 sum x + bias + residual rounds by one ulp of its terms before normalisation.
"""

import numpy as np
import pytest
from tformer import ops

from norm_testlib import check_norm

SHAPES = [(1, 1), (1, 7), (4, 16), (3, 64), (17, 100), (2, 1023), (5, 1024)]
EXTRAS = [(False, False), (True, False), (False, True), (True, True)]


def ln_ref(z, gamma, beta, eps):
    z = z.astype(np.float64)
    mean = z.mean(axis=-1, keepdims=True)
    var = ((z - mean) ** 2).mean(axis=-1, keepdims=True)
    return (z - mean) / np.sqrt(var + eps) * gamma.astype(np.float64) + beta.astype(np.float64)


def _params(rng, cols):
    gamma = (1.0 + 0.3 * rng.standard_normal(cols)).astype(np.float32)
    beta = (0.5 * rng.standard_normal(cols)).astype(np.float32)
    return gamma, beta


@pytest.mark.parametrize("with_bias,with_residual", EXTRAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm(device, shape, with_bias, with_residual):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    x = (1.5 * rng.standard_normal(shape) + 0.3).astype(np.float32)
    gamma, beta = _params(rng, shape[1])
    bias = rng.standard_normal(shape[1]).astype(np.float32) if with_bias else None
    residual = rng.standard_normal(shape).astype(np.float32) if with_residual else None
    out = ops.layer_norm(x, gamma, beta, eps=1e-5, bias=bias, residual=residual, device=device)
    z = x.astype(np.float64)
    if with_bias:
        z = z + bias
    if with_residual:
        z = z + residual
    check_norm(out, ln_ref(z, gamma, beta, 1e-5), f"{shape} bias={with_bias} res={with_residual}")


@pytest.mark.parametrize("with_bias,with_residual", EXTRAS)
def test_layer_norm_return_sum(device, with_bias, with_residual):
    rng = np.random.default_rng(21)
    shape = (6, 40)
    x = rng.standard_normal(shape).astype(np.float32)
    gamma, beta = _params(rng, 40)
    bias = rng.standard_normal(40).astype(np.float32) if with_bias else None
    residual = rng.standard_normal(shape).astype(np.float32) if with_residual else None
    result = ops.layer_norm(x, gamma, beta, bias=bias, residual=residual, return_sum=True,
                            device=device)
    assert isinstance(result, tuple) and len(result) == 2, type(result)
    out, total = result
    z = x.astype(np.float64)
    if with_bias:
        z = z + bias
    if with_residual:
        z = z + residual
    # The sum is an fp32 add of two or three fp32 terms: two ulps of the largest.
    assert total.dtype == np.float32 and total.shape == shape
    np.testing.assert_allclose(total.astype(np.float64), z, rtol=0,
                               atol=float(np.max(np.abs(z))) * 2.5e-7)
    check_norm(out, ln_ref(z, gamma, beta, 1e-5))


@pytest.mark.parametrize("eps", [1e-12, 1e-5, 0.5])
def test_layer_norm_eps(device, eps):
    """eps = 0.5 is comparable to the variance, so it must be added inside the sqrt."""
    rng = np.random.default_rng(22)
    x = (0.7 * rng.standard_normal((5, 33))).astype(np.float32)
    gamma, beta = _params(rng, 33)
    out = ops.layer_norm(x, gamma, beta, eps=eps, device=device)
    check_norm(out, ln_ref(x, gamma, beta, eps), f"eps={eps}")


def test_layer_norm_default_eps_is_1e_5(device):
    rng = np.random.default_rng(23)
    x = (0.01 * rng.standard_normal((3, 24))).astype(np.float32)  # var 1e-4 ~ eps
    gamma, beta = _params(rng, 24)
    check_norm(ops.layer_norm(x, gamma, beta, device=device), ln_ref(x, gamma, beta, 1e-5))


def test_layer_norm_large_mean(device):
    """Rows with mean 20 and std 1 over 1024 columns: the one-pass E[x^2] - E[x]^2 in fp32
    loses the variance here (PyTorch does not); a stable two-pass / Welford form errs
    by about 20 * 6e-8 = 1.2e-6."""
    rng = np.random.default_rng(24)
    x = (20.0 + rng.standard_normal((4, 1024))).astype(np.float32)
    gamma, beta = _params(rng, 1024)
    check_norm(ops.layer_norm(x, gamma, beta, device=device), ln_ref(x, gamma, beta, 1e-5))


def test_layer_norm_constant_row(device):
    """Zero variance: output is beta exactly (no NaN from 0/0)."""
    x = np.full((2, 8), 3.25, dtype=np.float32)
    gamma, beta = _params(np.random.default_rng(25), 8)
    out = ops.layer_norm(x, gamma, beta, device=device)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.broadcast_to(beta, (2, 8)), rtol=0, atol=1e-6)


def test_layer_norm_gamma_length_mismatch(device):
    with pytest.raises(ValueError, match=r"(?s)8.*9|9.*8"):
        ops.layer_norm(np.ones((2, 8), np.float32), np.ones(9, np.float32),
                       np.zeros(9, np.float32), device=device)
