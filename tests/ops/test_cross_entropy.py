"""tformer.ops.cross_entropy against torch.nn.functional.cross_entropy(logits, labels,
label_smoothing=eps, ignore_index=..., reduction="none") in float64 and its gradient
(torch autograd of sum(loss) * grad_scale).

Tolerances:
- loss: 2e-6 * (1 + |ref| + max|logits|): the float32 log-sum-exp of logits up to ~max|x|
  carries ulps of max|x| (the max is subtracted exactly, the exp sum has ~1e-7 relative
  error over 50k classes with 16 lanes of partial sums).
- dlogits: 1e-6 * |grad_scale| absolute + 1e-5 relative: softmax probabilities in [0, 1]
  from fast_exp (~1 ulp) of x - lse.
"""

import numpy as np
import pytest
import torch
from tformer import ops

from train_testlib import assert_close, f64, run


def reference(logits, labels, smoothing, ignore_index, grad_scale):
    t = torch.tensor(f64(logits), requires_grad=True)
    lab = torch.tensor(np.asarray(labels, dtype=np.int64))
    loss = torch.nn.functional.cross_entropy(t, lab, label_smoothing=smoothing, ignore_index=ignore_index,
                                             reduction="none")
    (loss.sum() * grad_scale).backward()
    return loss.detach().numpy(), t.grad.numpy()


def _check(got, ref, logits, grad_scale, what):
    loss, grad = got
    rloss, rgrad = ref
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    assert_close(loss, rloss, atol=2e-6 * (1 + np.max(np.abs(logits))), rtol=2e-6, what=f"{what} loss")
    assert_close(grad, rgrad, atol=1e-6 * abs(grad_scale), rtol=1e-5, what=f"{what} dlogits")


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("rows,vocab", [(1, 1), (3, 2), (17, 100), (5, 1000), (2, 50000)])
def test_cross_entropy(device, rows, vocab, smoothing):
    rng = np.random.default_rng(rows * 1000 + vocab)
    logits = (3 * rng.standard_normal((rows, vocab))).astype(np.float32)
    labels = rng.integers(0, vocab, size=rows).astype(np.int32)
    got = run(device, ops.cross_entropy, logits, labels, smoothing=smoothing, grad_scale=0.25)
    _check(got, reference(logits, labels, smoothing, -100, 0.25), logits, 0.25, f"{rows}x{vocab} eps={smoothing}")


@pytest.mark.parametrize("ignore_index", [-100, 0, 3])
def test_cross_entropy_ignore_index(device, ignore_index):
    """Ignored rows: loss 0 and a zero gradient (torch's reduction="none")."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((12, 9)).astype(np.float32)
    labels = rng.integers(0, 9, size=12).astype(np.int32)
    labels[[1, 4, 5, 11]] = ignore_index
    loss, grad = run(device, ops.cross_entropy, logits, labels, smoothing=0.1, ignore_index=ignore_index)
    _check((loss, grad), reference(logits, labels, 0.1, ignore_index, 1.0), logits, 1.0, "ignore")
    assert np.all(loss[[1, 4, 5, 11]] == 0) and np.all(grad[[1, 4, 5, 11]] == 0)


def test_cross_entropy_extreme_logits(device):
    """Logits far from 0 (the max is subtracted) and a 3-D (batch, len, vocab) input."""
    rng = np.random.default_rng(8)
    logits = (rng.standard_normal((2, 5, 300)) * 30 + np.array([[-80.0], [80.0]])[:, :, None]).astype(np.float32)
    labels = rng.integers(0, 300, size=(2, 5)).astype(np.int32)
    loss, grad = run(device, ops.cross_entropy, logits, labels, smoothing=0.05, grad_scale=3.0)
    assert loss.shape == (2, 5) and grad.shape == logits.shape
    rloss, rgrad = reference(logits.reshape(10, 300), labels.reshape(10), 0.05, -100, 3.0)
    _check((loss.reshape(10), grad.reshape(10, 300)), (rloss, rgrad), logits, 3.0, "extreme")


def test_cross_entropy_loss_only(device):
    logits = np.random.default_rng(9).standard_normal((4, 6)).astype(np.float32)
    labels = np.array([0, 5, 2, -100], np.int32)
    loss = run(device, ops.cross_entropy, logits, labels, with_grad=False)
    assert_close(loss, reference(logits, labels, 0.0, -100, 1.0)[0], atol=2e-6, what="loss")


def test_cross_entropy_errors(device):
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"cross_entropy: label 4 at row 1 outside \[0, 4\) \(ignore_index is -100\)"):
        run(device, ops.cross_entropy, logits, np.array([0, 4, 1], np.int32))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must have shape \(3,\), got \(2,\)"):
        run(device, ops.cross_entropy, logits, np.array([0, 1], np.int32))
    with pytest.raises(ValueError, match=r"cross_entropy: label smoothing must be in \[0, 1\], got 1.5"):
        run(device, ops.cross_entropy, logits, np.array([0, 1, 2], np.int32), smoothing=1.5)
