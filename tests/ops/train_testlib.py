"""Helpers for the training-op tests (test_*_backward.py, test_cross_entropy.py,
test_dropout.py, test_adamw.py).

``run(device, fn, *args, **kwargs)`` calls a tformer.ops function on ``device`` (the
``device`` fixture of tests/conftest.py: "cpu", and "cuda" where a GPU is present). Every
backend implements every training kernel, so any error is a failure on any device.
"""

import numpy as np
import torch

# The activations of tformer's Activation enum as torch functions (gelu = erf form,
# gelu_tanh = torch's approximate="tanh"), for the autograd references.
TORCH_ACTS = {
    "relu": torch.relu,
    "gelu": lambda t: torch.nn.functional.gelu(t),
    "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
    "silu": torch.nn.functional.silu,
    "none": lambda t: t,
}


def run(device, fn, *args, **kwargs):
    return fn(*args, device=device, **kwargs)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def assert_close(out, ref, atol, rtol=0.0, what=""):
    """|out - ref| <= atol + rtol * |ref| elementwise, with the worst element reported."""
    out = np.asarray(out)
    assert out.shape == np.shape(ref), (what, out.shape, np.shape(ref))
    err = np.abs(f64(out) - f64(ref))
    bound = atol + rtol * np.abs(f64(ref))
    if err.size and not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: err {err[worst]:.3e} > bound {np.broadcast_to(bound, err.shape)[worst]:.3e}"
                             f" at {worst} (out {f64(out)[worst]!r}, ref {f64(ref)[worst]!r})")
