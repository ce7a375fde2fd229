"""tformer.ops.embedding_backward: dtable[ids[r]] += scale * dout[r] and
dpositions[position_ids[r]] += dout[r], rows whose id is skip_id skipped, against
np.add.at in float64.

Tolerance: 1e-6 * (sum of |terms| added into each table row): float32 sums of the
repeated ids' rows, added in row order.
"""

import numpy as np
import pytest
import tformer
from tformer import ops

from train_testlib import assert_close, f64, run


def reference(dout, ids, vocab, scale, position_ids=None, num_positions=0, skip_id=-1):
    dim = dout.shape[-1]
    d2 = f64(dout).reshape(-1, dim)
    ids = np.asarray(ids).reshape(-1)
    keep = ids != skip_id
    table, table_abs = np.zeros((vocab, dim)), np.zeros((vocab, dim))
    np.add.at(table, ids[keep], scale * d2[keep])
    np.add.at(table_abs, ids[keep], np.abs(scale * d2[keep]))
    if position_ids is None:
        return table, table_abs, None, None
    pos = np.asarray(position_ids).reshape(-1)
    positions, positions_abs = np.zeros((num_positions, dim)), np.zeros((num_positions, dim))
    np.add.at(positions, pos[keep], d2[keep])
    np.add.at(positions_abs, pos[keep], np.abs(d2[keep]))
    return table, table_abs, positions, positions_abs


@pytest.mark.parametrize("shape,vocab,dim", [((1,), 1, 1), ((3, 5), 4, 7), ((4, 33), 50, 64),
                                             ((8, 100), 11, 300), ((2, 700), 2000, 96)])
def test_embedding_backward(device, shape, vocab, dim):
    rng = np.random.default_rng(vocab + dim)
    ids = rng.integers(0, vocab, size=shape).astype(np.int32)  # small vocabularies: many repeats
    dout = rng.standard_normal(shape + (dim,)).astype(np.float32)
    got = run(device, ops.embedding_backward, dout, ids, vocab, scale=1.7)
    ref, ref_abs, _, _ = reference(dout, ids, vocab, 1.7)
    assert got.dtype == np.float32 and got.shape == (vocab, dim)
    assert_close(got, ref, atol=1e-6 * ref_abs, what="dtable")


def test_embedding_backward_positions_skip_and_accumulate(device):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 6, size=(5, 12)).astype(np.int32)
    ids[:, -3:] = 1  # padding (skip_id 1)
    position_ids = np.tile(np.arange(2, 14, dtype=np.int32), (5, 1))
    dout = rng.standard_normal((5, 12, 40)).astype(np.float32)
    table0 = rng.standard_normal((6, 40)).astype(np.float32)
    positions0 = rng.standard_normal((20, 40)).astype(np.float32)
    dtable, dpositions = run(device, ops.embedding_backward, dout, ids, 6, scale=0.5,
                             position_ids=position_ids, num_positions=20, skip_id=1, dtable=table0,
                             dpositions=positions0)
    ref, ref_abs, rpos, rpos_abs = reference(dout, ids, 6, 0.5, position_ids, 20, skip_id=1)
    assert_close(dtable, f64(table0) + ref, atol=1e-6 * (ref_abs + np.abs(table0)), what="dtable")
    assert_close(dpositions, f64(positions0) + rpos, atol=1e-6 * (rpos_abs + np.abs(positions0)),
                 what="dpositions")
    np.testing.assert_array_equal(dtable[1], table0[1])  # the skipped id's row is untouched
    np.testing.assert_array_equal(dpositions[11:14], positions0[11:14])  # only padding sat there


def test_embedding_backward_same_bits_any_thread_count():
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 10, size=(64, 64)).astype(np.int32)
    dout = rng.standard_normal((64, 64, 256)).astype(np.float32)
    before = tformer.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            tformer.set_num_threads(n)
            outs.append(ops.embedding_backward(dout, ids, 10))
    finally:
        tformer.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_embedding_backward_errors(device):
    dout = np.zeros((2, 3, 4), np.float32)
    ids = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    with pytest.raises(ValueError, match=r"embedding_backward: id 5 at row 5 outside the table \[0, 5\)"):
        run(device, ops.embedding_backward, dout, ids, 5)
    with pytest.raises(ValueError, match=r"embedding_backward: dout must have shape \(2, 2, 4\), got \(2, 3, 4\)"):
        run(device, ops.embedding_backward, dout, ids[:, :2], 6)
    with pytest.raises(ValueError, match=r"dtable: expected shape \(6, 4\), got \(6, 3\)"):
        run(device, ops.embedding_backward, dout, ids, 6, dtable=np.zeros((6, 3), np.float32))
    with pytest.raises(ValueError, match=r"embedding_backward: position id 3 at row 3 outside \[0, 3\)"):
        run(device, ops.embedding_backward, dout, ids, 6, position_ids=ids, num_positions=3)
    # The skipped id need not be a valid row.
    run(device, ops.embedding_backward, dout, np.where(ids == 5, -1, ids).astype(np.int32), 5)
