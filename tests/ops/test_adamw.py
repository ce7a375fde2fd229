"""tformer.ops.adamw against torch.optim.AdamW (float32, its default single-tensor
path on the CPU) on the same tensors over several steps, and sum_squares against
float64 NumPy.

Tolerance: 1e-6 relative for param, m (exp_avg) and v (exp_avg_sq), with a floor of
1e-6 * max|.| for elements near 0. The kernel follows torch's order of operations
(decay, lerp of m, v * beta2 + (1 - beta2) g^2, addcdiv) with its scalars computed in
double from double hyperparameters and rounded to float32 once, as torch does; what is
left is FMA contraction and vectorized sqrt/division: ulps per step.
"""

import numpy as np
import pytest
import torch
from tformer import ops

from train_testlib import assert_close, f64, run

CONFIGS = [
    dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.0),
    dict(lr=0.1, betas=(0.3, 0.5), eps=1e-4, weight_decay=0.1),  # 1 - beta1 >= 0.5: torch's other lerp form
]


def _close(out, ref, what):
    assert_close(out, ref, atol=1e-6 * np.max(np.abs(ref)), rtol=1e-6, what=what)


@pytest.mark.parametrize("shape", [(1,), (7, 13), (40000,)])
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_adamw_matches_torch(device, config, shape):
    cfg = CONFIGS[config]
    rng = np.random.default_rng(config * 10 + len(shape))
    param = rng.standard_normal(shape).astype(np.float32)
    tparam = torch.nn.Parameter(torch.tensor(param.copy()))
    opt = torch.optim.AdamW([tparam], **cfg)
    m = np.zeros(shape, np.float32)
    v = np.zeros(shape, np.float32)
    for step in range(1, 7):
        grad = (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 1)).astype(np.float32)
        tparam.grad = torch.tensor(grad.copy())
        opt.step()
        param, m, v = run(device, ops.adamw, param, grad, m, v, lr=cfg["lr"], beta1=cfg["betas"][0],
                          beta2=cfg["betas"][1], eps=cfg["eps"], weight_decay=cfg["weight_decay"], step=step)
        state = opt.state[tparam]
        _close(param, tparam.detach().numpy(), f"param step {step}")
        _close(m, state["exp_avg"].numpy(), f"m step {step}")
        _close(v, state["exp_avg_sq"].numpy(), f"v step {step}")


def test_adamw_grad_scale(device):
    """grad_scale multiplies the gradient first (clipping / loss scaling)."""
    rng = np.random.default_rng(5)
    param = rng.standard_normal(100).astype(np.float32)
    grad = rng.standard_normal(100).astype(np.float32)
    zeros = np.zeros(100, np.float32)
    a = run(device, ops.adamw, param, grad, zeros, zeros, lr=0.01, weight_decay=0.1, step=3, grad_scale=0.25)
    b = run(device, ops.adamw, param, grad * np.float32(0.25), zeros, zeros, lr=0.01, weight_decay=0.1, step=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_adamw_does_not_modify_inputs(device):
    param = np.ones(8, np.float32)
    m = np.zeros(8, np.float32)
    run(device, ops.adamw, param, np.ones(8, np.float32), m, m.copy())
    assert np.all(param == 1) and np.all(m == 0)


def test_adamw_errors(device):
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"adamw: step must be >= 1 \(1-based\), got 0"):
        run(device, ops.adamw, x, x, x, x, step=0)
    with pytest.raises(ValueError, match=r"adamw: beta1 must be in \[0, 1\), got 1"):
        run(device, ops.adamw, x, x, x, x, beta1=1.0)
    with pytest.raises(ValueError, match=r"adamw: grad must have the shape of param \(4,\), got \(3,\)"):
        run(device, ops.adamw, x, x[:3], x, x)


@pytest.mark.parametrize("n", [0, 1, 1000, 200_001])
def test_sum_squares(device, n):
    """Double accumulation: products of float32 values are exact in double, so only the
    double sums round (relative 1e-12 is ~n * 2^-53 with room to spare)."""
    x = (np.random.default_rng(n).standard_normal(n) * 100).astype(np.float32)
    got = run(device, ops.sum_squares, x)
    assert isinstance(got, float)
    ref = float(np.sum(f64(x) ** 2))
    assert abs(got - ref) <= 1e-12 * max(ref, 1e-300), (got, ref)


def test_sum_squares_beyond_float32_precision(device):
    """1 + 2^24 ones of 2^-12: float32 accumulation would stop growing at 2^24 * 2^-24."""
    x = np.full(1 << 24, 2.0 ** -12, np.float32)
    x[0] = 1.0
    assert run(device, ops.sum_squares, x) == 1.0 + (2 ** 24 - 1) * 2.0 ** -24
