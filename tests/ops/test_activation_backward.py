"""tformer.ops.activation_backward: dz = dy * act'(z), against torch autograd in float64
(relu, gelu = erf form, gelu_tanh = torch's approximate="tanh", silu, none).

Tolerance: |dz - ref| <= 5e-7 * |dy| (+ 1e-6 relative). act' is O(1) (at most ~1.13 for
gelu); the kernels use the same branch-free exp/erf as the forward: fast_erf is within
1.5e-7 (Abramowitz & Stegun 7.1.26), fast_exp about 1 ulp, and the sigmoid tails are
formed without cancellation, so the derivative is within ~2.2e-7 over [-10, 10].
"""

import numpy as np
import pytest
import torch
from tformer import ops

from train_testlib import TORCH_ACTS, assert_close, f64, run

def torch_grad(act, z, dy):
    tz = torch.tensor(f64(z), requires_grad=True)
    TORCH_ACTS[act](tz).backward(torch.tensor(f64(dy)))
    return tz.grad.numpy()


@pytest.mark.parametrize("act", sorted(TORCH_ACTS))
def test_activation_backward_dense_range(device, act):
    """Every z on a fine grid over [-12, 12] (both tails), unit dy."""
    z = np.linspace(-12, 12, 24001).astype(np.float32)
    dy = np.ones_like(z)
    dz = run(device, ops.activation_backward, dy, z, act)
    assert dz.dtype == np.float32 and dz.shape == z.shape
    assert_close(dz, torch_grad(act, z, dy), atol=5e-7, rtol=1e-6, what=act)


@pytest.mark.parametrize("shape", [(1,), (7, 3), (33, 130), (4, 5, 1000)])
@pytest.mark.parametrize("act", sorted(TORCH_ACTS))
def test_activation_backward_random(device, act, shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    z = (2.5 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    dz = run(device, ops.activation_backward, dy, z, act)
    assert_close(dz, torch_grad(act, z, dy), atol=5e-7 * np.abs(f64(dy)), rtol=1e-6, what=act)


def test_relu_backward_at_zero(device):
    """torch's threshold_backward: no gradient at z == 0 exactly."""
    z = np.array([-1.0, -0.0, 0.0, 1e-30, 2.0], dtype=np.float32)
    dz = run(device, ops.activation_backward, np.full(5, 3.0, np.float32), z, "relu")
    np.testing.assert_array_equal(dz, [0.0, 0.0, 0.0, 3.0, 3.0])


def test_activation_backward_errors(device):
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"activation_backward: dy must have the shape of z \(3, 4\), got \(4, 3\)"):
        run(device, ops.activation_backward, np.zeros((4, 3), np.float32), z, "relu")
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        run(device, ops.activation_backward, z, z, "tanh")
