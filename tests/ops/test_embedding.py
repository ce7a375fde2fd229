"""tformer.ops.embedding: table[ids] * scale + positions[position_ids]."""

import numpy as np
import pytest
from tformer import ops


def _table(rng, rows, dim):
    return rng.standard_normal((rows, dim)).astype(np.float32)


@pytest.mark.parametrize("int_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ids_shape", [(1,), (7,), (2, 5), (3, 1, 4)])
def test_embedding_lookup_is_exact(device, ids_shape, int_dtype):
    rng = np.random.default_rng(31)
    table = _table(rng, 50, 13)
    ids = rng.integers(0, 50, size=ids_shape).astype(int_dtype)
    ids.flat[0] = 0
    ids.flat[-1] = 49  # both ends of the table
    out = ops.embedding(ids, table, device=device)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == ids_shape + (13,)
    np.testing.assert_array_equal(out, table[ids])  # a copy, no arithmetic


@pytest.mark.parametrize("dim", [1, 8, 36, 129])
@pytest.mark.parametrize("scale", [1.0, 6.0, 0.125])
def test_embedding_scale_and_positions(device, dim, scale):
    rng = np.random.default_rng(dim)
    table = _table(rng, 60, dim)
    positions = _table(rng, 20, dim)
    ids = rng.integers(0, 60, size=(3, 9))
    ids[1, 4] = ids[1, 5]  # repeated token
    position_ids = np.tile(np.arange(2, 11), (3, 1))  # offset start, as BART (+2)
    out = ops.embedding(ids, table, scale=scale, positions=positions,
                        position_ids=position_ids, device=device)
    ref = table[ids].astype(np.float64) * scale + positions[position_ids].astype(np.float64)
    # Two fp32 roundings (multiply, add): at most ~2 ulps of the larger term.
    bound = 2.5e-7 * (np.abs(table[ids] * scale) + np.abs(positions[position_ids]))
    assert out.shape == (3, 9, dim)
    assert np.all(np.abs(out - ref) <= bound + 1e-30)


def test_embedding_scale_without_positions(device):
    rng = np.random.default_rng(32)
    table = _table(rng, 10, 16)
    ids = np.array([[3, 3, 9], [0, 1, 2]])
    out = ops.embedding(ids, table, scale=4.0, device=device)  # power of two: exact
    np.testing.assert_array_equal(out, table[ids] * 4.0)


def test_embedding_irregular_position_ids(device):
    """position_ids are arbitrary per element (fairseq positions skip padding)."""
    rng = np.random.default_rng(33)
    table = _table(rng, 30, 8)
    positions = _table(rng, 12, 8)
    ids = np.array([[5, 6, 7, 1], [8, 1, 1, 1]])
    position_ids = np.array([[2, 3, 4, 1], [2, 1, 1, 1]])
    out = ops.embedding(ids, table, positions=positions, position_ids=position_ids,
                        device=device)
    ref = table[ids].astype(np.float64) + positions[position_ids]
    np.testing.assert_allclose(out, ref, rtol=3e-7, atol=1e-7)


def test_embedding_id_out_of_range(device):
    table = np.zeros((50, 4), np.float32)
    with pytest.raises(ValueError, match=r"\b50\b"):
        ops.embedding(np.array([1, 50]), table, device=device)
    with pytest.raises(ValueError, match=r"-2"):
        ops.embedding(np.array([[1, -2]]), table, device=device)


def test_embedding_position_id_out_of_range(device):
    table = np.zeros((50, 4), np.float32)
    positions = np.zeros((6, 4), np.float32)
    with pytest.raises(ValueError, match=r"\b6\b"):
        ops.embedding(np.array([1, 2]), table, positions=positions,
                      position_ids=np.array([0, 6]), device=device)
