"""tformer.ops.gemm against a float64 NumPy reference.

Tolerance: each output element is a k-term dot product, so its rounding error is bounded
by a multiple of eps * sum_k |a_ik b_kj|. We require
    |out - ref| <= 1e-5 * (|alpha| * (|op(a)| @ |op(b)|) + |beta| * |c|)
elementwise; a blocked fp32 dot product with k <= 300 stays ~100x under this
(typical error ~ sqrt(k) * 6e-8 relative to that sum). This scale-aware bound replaces a
plain rtol, which is meaningless for outputs that cancel to nearly zero.
"""

import numpy as np
import pytest
from tformer import ops

SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 64, 64), (5, 300, 3), (129, 65, 31),
          (2, 1, 130)]


def _rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _check(out, a_op, b_op, alpha=1.0, beta=0.0, c=None):
    a64, b64 = a_op.astype(np.float64), b_op.astype(np.float64)
    ref = alpha * (a64 @ b64)
    bound = 1e-5 * abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if c is not None and beta != 0.0:
        ref = ref + beta * c.astype(np.float64)
        bound = bound + 1e-5 * abs(beta) * np.abs(c.astype(np.float64))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32, (type(out), out.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    err = np.abs(out.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound + 1e-30), (
        f"err {err[worst]:.3e} > bound {bound[worst]:.3e} at {worst}")


@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_gemm(device, m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = _rand(rng, (k, m) if trans_a else (m, k))
    b = _rand(rng, (n, k) if trans_b else (k, n))
    out = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, device=device)
    _check(out, a.T if trans_a else a, b.T if trans_b else b)


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.0, 1.0), (-2.0, 0.75), (0.0, 1.5)])
@pytest.mark.parametrize("m,k,n", [(3, 5, 7), (33, 64, 17)])
def test_gemm_alpha_beta_c(device, m, k, n, alpha, beta):
    rng = np.random.default_rng(7 + m)
    a, b, c = _rand(rng, (m, k)), _rand(rng, (k, n)), _rand(rng, (m, n))
    c_before = c.copy()
    out = ops.gemm(a, b, alpha=alpha, beta=beta, c=c, device=device)
    _check(out, a, b, alpha=alpha, beta=beta, c=c_before)


def test_gemm_transposed_with_alpha_beta(device):
    rng = np.random.default_rng(3)
    a, b, c = _rand(rng, (11, 6)), _rand(rng, (13, 11)), _rand(rng, (6, 13))
    c_before = c.copy()  # whether gemm may write into c is tested separately
    out = ops.gemm(a, b, trans_a=True, trans_b=True, alpha=0.3, beta=-1.0, c=c,
                   device=device)
    _check(out, a.T, b.T, alpha=0.3, beta=-1.0, c=c_before)


def test_gemm_does_not_modify_inputs(device):
    """ops.gemm returns alpha*op(a)@op(b) + beta*c; like every NumPy function it must not
    write the result into the caller's c (or a, b)."""
    rng = np.random.default_rng(4)
    a, b, c = _rand(rng, (5, 4)), _rand(rng, (4, 6)), _rand(rng, (5, 6))
    copies = [x.copy() for x in (a, b, c)]
    ops.gemm(a, b, beta=1.0, c=c, device=device)
    for before, after in zip(copies, (a, b, c)):
        np.testing.assert_array_equal(after, before)


def test_gemm_non_contiguous_inputs(device):
    """Strided views (a transposed array, every other column) must either be read
    correctly or be rejected; silently ignoring strides is a bug."""
    rng = np.random.default_rng(5)
    a = _rand(rng, (9, 14))[:, ::2]         # (9, 7), strided columns
    b = _rand(rng, (5, 7)).T                # (7, 5), Fortran order
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    try:
        out = ops.gemm(a, b, device=device)
    except (ValueError, TypeError) as exc:
        assert "contiguous" in str(exc).lower() or "stride" in str(exc).lower(), exc
        return
    _check(out, np.ascontiguousarray(a), np.ascontiguousarray(b))


def test_gemm_inner_dimension_mismatch(device):
    a = np.ones((3, 5), np.float32)
    b = np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match=r"(?s)5.*6|6.*5"):
        ops.gemm(a, b, device=device)
