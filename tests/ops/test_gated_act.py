"""tformer.ops.gated_act: act(x[..., :n]) * x[..., n:] for x (..., 2n) (the gated FFN of
T5 v1.1 / flan-T5 / mT5), against float64 NumPy.

Tolerance: |out - ref| <= 1e-5 |ref| + 1e-6 |gate|: the activation in fp32 is good to
1e-6 absolute (test_bias_act.py's bound; the erf form's polynomial errs by ~1e-7 * |a|),
which the gate multiplies, and the product rounds once.
"""

import numpy as np
import pytest
from tformer import ops

from test_bias_act import act_ref

ACTIVATIONS = ["relu", "gelu", "gelu_tanh", "gelu_new", "silu", "none"]
# Widths below, at and past multiples of the 8- and 16-lane vectors.
SHAPES = [(1, 1), (3, 7), (16, 64), (5, 1000), (33, 127), (2, 3, 24)]


def gated_ref(name, x):
    x = x.astype(np.float64)
    n = x.shape[-1] // 2
    return act_ref("gelu_tanh" if name == "gelu_new" else name, x[..., :n]) * x[..., n:]


def _check(out, ref, x, what=""):
    assert isinstance(out, np.ndarray) and out.dtype == np.float32, (type(out), out.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    gate = np.abs(x[..., x.shape[-1] // 2:].astype(np.float64))
    err = np.abs(out.astype(np.float64) - ref)
    bound = 1e-5 * np.abs(ref) + 1e-6 * gate
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"{what}: err {err[worst]:.3e} > {bound[worst]:.3e} at {worst}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gated_act(device, activation, shape):
    rng = np.random.default_rng(sum(shape) * 13 + len(activation))
    x = (2.0 * rng.standard_normal(shape[:-1] + (2 * shape[-1],))).astype(np.float32)
    out = ops.gated_act(x, activation, device=device)
    _check(out, gated_ref(activation, x), x, f"{activation} {shape}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gated_act_extreme_values(device, activation):
    a = np.array([-100.0, -30.0, -10.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 10.0, 30.0, 100.0])
    x = np.concatenate([a, np.linspace(-2.0, 2.0, a.size)])[None].astype(np.float32)
    out = ops.gated_act(x, activation, device=device)
    assert np.all(np.isfinite(out))
    _check(out, gated_ref(activation, x), x, activation)


def test_gated_act_halves_are_not_swapped(device):
    """relu(a) * g with a < 0 everywhere is 0; the swapped form relu(g) * a is not."""
    x = np.concatenate([-np.ones((2, 4)), np.ones((2, 4))], axis=-1).astype(np.float32)
    assert np.all(ops.gated_act(x, "relu", device=device) == 0.0)


def test_gated_act_default_is_gelu_tanh(device):
    """T5's gated-gelu is gelu_new (the tanh form); near -2.7 erf and tanh forms differ."""
    x = np.concatenate([np.full((1, 8), -2.7), np.ones((1, 8))], axis=-1).astype(np.float32)
    _check(ops.gated_act(x, device=device), gated_ref("gelu_tanh", x), x)
    assert np.max(np.abs(gated_ref("gelu", x) - gated_ref("gelu_tanh", x))) > 1e-4


def test_gated_act_odd_width(device):
    with pytest.raises(ValueError, match=r"gated_act: x must end with an even number of columns"):
        ops.gated_act(np.ones((2, 7), np.float32), "relu", device=device)


def test_gated_act_unknown_activation(device):
    with pytest.raises(ValueError, match=r"unknown activation 'tanhh'"):
        ops.gated_act(np.ones((2, 8), np.float32), "tanhh", device=device)
