"""Helpers shared by the LayerNorm and RMSNorm tests (test_layer_norm*.py, test_rms_norm*.py)."""

import numpy as np
import torch

from train_testlib import f64


def check_norm(out, ref, what=""):
    """A float32 array within 1e-5 * (|ref| + max|ref|) of the float64 reference."""
    assert isinstance(out, np.ndarray) and out.dtype == np.float32, (type(out), out.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=1e-5, atol=1e-5 * scale,
                               err_msg=what)


def torch_sum_input(x, bias=None, residual=None):
    """(tx, s): x as a float64 leaf that requires grad, and s = x + bias + residual from it."""
    tx = torch.tensor(f64(x), requires_grad=True)
    s = tx
    if bias is not None:
        s = s + torch.tensor(f64(bias))
    if residual is not None:
        s = s + torch.tensor(f64(residual))
    return tx, s


def ds_tol(rstd, dout, gamma):
    """ds's absolute tolerance: 1e-5 * max|rstd * dout * gamma|."""
    return 1e-5 * float(np.max(np.abs(f64(rstd)[..., None] * f64(dout) * f64(gamma))))
