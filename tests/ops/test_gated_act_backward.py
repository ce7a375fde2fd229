"""tformer.ops.gated_act_backward against torch autograd in float64.

Forward (T5 v1.1's gated FFN): out = act(a) * b with x = [a | b] along the last axis.
Backward: dx = [dy * b * act'(a) | dy * act(a)].

Tolerances: act' is within ~2.2e-7 of the float64 derivative (test_activation_backward.py),
act within ~1e-6 relative (the branch-free exp/erf/tanh of the forward kernels), so
da: 5e-7 * |dy * b| + 1e-6 relative; db: 1e-6 * |dy| * (1 + |a|) (act(a) is O(|a|)).
"""

import numpy as np
import pytest
import torch
from tformer import ops

from train_testlib import TORCH_ACTS, assert_close, f64, run

def torch_gated_grad(act, x, dy):
    tx = torch.tensor(f64(x), requires_grad=True)
    n = x.shape[-1] // 2
    (TORCH_ACTS[act](tx[..., :n]) * tx[..., n:]).backward(torch.tensor(f64(dy)))
    return tx.grad.numpy()


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (33, 130), (4, 5, 1000)])
@pytest.mark.parametrize("act", sorted(TORCH_ACTS))
def test_gated_act_backward(device, act, shape):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    x = (2.5 * rng.standard_normal(shape[:-1] + (2 * shape[-1],))).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = run(device, ops.gated_act_backward, dy, x, act)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    ref = torch_gated_grad(act, x, dy)
    n = shape[-1]
    a, b = f64(x[..., :n]), f64(x[..., n:])
    assert_close(dx[..., :n], ref[..., :n], atol=5e-7 * np.abs(f64(dy) * b), rtol=1e-6, what=f"{act} da")
    assert_close(dx[..., n:], ref[..., n:], atol=1e-6 * np.abs(f64(dy)) * (1 + np.abs(a)), what=f"{act} db")


def test_gated_act_backward_errors(device):
    x = np.zeros((3, 8), np.float32)
    with pytest.raises(ValueError, match=r"gated_act_backward: x must be \(\.\.\., 2 \* cols\), got \(3, 7\)"):
        run(device, ops.gated_act_backward, np.zeros((3, 3), np.float32), x[:, :7], "relu")
    with pytest.raises(ValueError, match=r"gated_act_backward: dy must have shape \(3, 4\), got \(3, 8\)"):
        run(device, ops.gated_act_backward, x, x, "relu")
    with pytest.raises(ValueError, match=r"unknown activation|activation"):
        run(device, ops.gated_act_backward, np.zeros((3, 4), np.float32), x, "tanhh")
