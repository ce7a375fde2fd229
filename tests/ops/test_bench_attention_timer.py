"""tformer._core.bench.AttentionTimer (the timing entry point of bench/gpu/bench_attention.py):
the results of its timed launches are attention_train / attention_backward's, checked against
torch autograd in float64 (tolerances of test_attention_backward.py), its times are positive,
and bad arguments raise ValueError naming the problem."""

import numpy as np
import pytest
from tformer._native import _core

from test_attention_backward import _check_all, _inputs, torch_reference


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("B,T,H,D", [(3, 17, 2, 16), (2, 40, 4, 32)])
def test_timer_results_match_float64(device, B, T, H, D, causal):
    q, k, v, dout = _inputs(B * 7 + T, B, T, T, H, D)
    timer = _core.bench.AttentionTimer(q, k, v, dout, H, causal, device=device)
    assert timer.forward(3) > 0
    assert set(timer.outputs(B)) == {"out", "lse"}  # no gradients before a backward ran
    assert timer.backward(2) > 0
    got = timer.outputs(B)
    ref = torch_reference(q, k, v, dout, H, causal=causal)
    _check_all([got[n] for n in ("out", "lse", "dq", "dk", "dv")], ref, v, f"timer B={B} T={T} causal={causal}")
    first = timer.outputs(1)  # the first sequence only
    assert first["out"].shape == (1, T, H * D) and first["lse"].shape == (1, H, T)
    np.testing.assert_array_equal(first["dq"], got["dq"][:1])


def test_timer_forward_only(device):
    q, k, v, _ = _inputs(1, 2, 8, 8, 2, 8)
    timer = _core.bench.AttentionTimer(q, k, v, None, 2, device=device)
    assert timer.forward(1) > 0
    with pytest.raises(ValueError, match="without dout"):
        timer.backward(1)


def test_timer_errors(device):
    q, k, v, dout = _inputs(2, 2, 8, 8, 2, 8)
    timer = _core.bench.AttentionTimer(q, k, v, dout, 2, device=device)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        timer.forward(0)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        timer.backward(-1)
    with pytest.raises(ValueError, match=r"rows must be in \[1, 2\]"):
        timer.outputs(3)
    with pytest.raises(ValueError, match="must be 3-D"):
        _core.bench.AttentionTimer(q[0], k, v, None, 2, device=device)
    with pytest.raises(ValueError, match="dout must have q's shape"):
        _core.bench.AttentionTimer(q, k, v, dout[:, :3], 2, device=device)
    with pytest.raises(ValueError, match="num_heads must be >= 1"):
        _core.bench.AttentionTimer(q, k, v, None, 0, device=device)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        _core.bench.AttentionTimer(q, k, v, None, 3, device=device)
    with pytest.raises(ValueError):
        _core.bench.AttentionTimer(q, k, v, None, 2, device="tpu")


def test_timer_half_dtype_is_refused_on_cpu():
    q, k, v, _ = _inputs(3, 1, 4, 4, 1, 8)
    with pytest.raises(TypeError, match="float32 only"):
        _core.bench.AttentionTimer(q, k, v, None, 1, device="cpu", dtype="bfloat16")
