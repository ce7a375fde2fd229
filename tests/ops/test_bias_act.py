"""tformer.ops.bias_act: act(x + bias) + residual, against float64 NumPy.

Tolerance: rtol 1e-5 with atol 1e-6 (outputs are O(1)); exp/erf/tanh in fp32 are good
to a few ulp, and rounding x + bias to fp32 adds at most one ulp of the pre-activation.
"""

import math

import numpy as np
import pytest
from tformer import ops

_erf = np.vectorize(math.erf)


def act_ref(name, z):
    if name == "none":
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "gelu":  # exact (erf) form, as torch.nn.functional.gelu
        return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
    if name in ("silu", "swish"):
        return z / (1.0 + np.exp(-z))
    raise AssertionError(name)


ACTIVATIONS = ["none", "relu", "gelu", "gelu_tanh", "silu", "swish"]
SHAPES = [(1, 1), (3, 7), (16, 64), (5, 1000), (33, 127)]
EXTRAS = [(False, False), (True, False), (False, True), (True, True)]  # bias, residual


def _check(out, ref, what=""):
    assert isinstance(out, np.ndarray) and out.dtype == np.float32, (type(out), out.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("with_bias,with_residual", EXTRAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_act(device, activation, shape, with_bias, with_residual):
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    x = (2.0 * rng.standard_normal(shape)).astype(np.float32)
    bias = rng.standard_normal(shape[1]).astype(np.float32) if with_bias else None
    residual = rng.standard_normal(shape).astype(np.float32) if with_residual else None
    x_before = x.copy()
    out = ops.bias_act(x, bias=bias, residual=residual, activation=activation, device=device)
    z = x.astype(np.float64) + (bias.astype(np.float64) if with_bias else 0.0)
    z = z.astype(np.float32).astype(np.float64)  # the pre-activation is an fp32 value
    ref = act_ref(activation, z)
    if with_residual:
        ref = ref + residual.astype(np.float64)
    _check(out, ref, f"{activation} {shape} bias={with_bias} residual={with_residual}")
    np.testing.assert_array_equal(x, x_before)  # input untouched


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_act_extreme_values(device, activation):
    """Tails: no overflow to inf/nan (e.g. exp(-x) for x = -100 in silu)."""
    x = np.array([[-100.0, -30.0, -10.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 10.0, 30.0, 100.0]],
                 dtype=np.float32)
    out = ops.bias_act(x, activation=activation, device=device)
    assert np.all(np.isfinite(out)), out
    _check(out, act_ref(activation, x.astype(np.float64)), activation)


def test_default_activation_is_identity_add(device):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    out = ops.bias_act(x, bias=b, device=device)
    _check(out, x.astype(np.float64) + b.astype(np.float64))


def test_gelu_is_erf_not_tanh(device):
    """Near x = -2.7 the erf and tanh forms differ by ~4.7e-4, far above tolerance: the
    two names must not map to the same function."""
    x = np.array([[-2.7, -1.5, 2.5]], dtype=np.float32)
    erf_out = ops.bias_act(x, activation="gelu", device=device)
    tanh_out = ops.bias_act(x, activation="gelu_tanh", device=device)
    _check(erf_out, act_ref("gelu", x.astype(np.float64)))
    _check(tanh_out, act_ref("gelu_tanh", x.astype(np.float64)))
    assert np.max(np.abs(erf_out - tanh_out)) > 1e-4


def test_unknown_activation(device):
    with pytest.raises(ValueError, match=r"mish"):
        ops.bias_act(np.ones((2, 2), np.float32), activation="mish", device=device)


def test_bias_length_mismatch(device):
    with pytest.raises(ValueError, match=r"(?s)5.*4|4.*5"):
        ops.bias_act(np.ones((3, 4), np.float32), bias=np.ones(5, np.float32), device=device)
