"""Turning user input (lists of token lists, or 2-D integer arrays) into the padded
int32 batch plus lengths that the core takes, with clear errors for bad input."""
from __future__ import annotations

import numbers

import numpy as np

from .option_checks import describe, is_integer


def prepare_ids(ids, name: str):
    """Returns (int32 array (batch, max_len) padded with 0 on the right, list of lengths)."""
    if isinstance(ids, (list, tuple)):
        return _from_sequences(ids, name)
    array = np.asarray(ids) if not isinstance(ids, np.ndarray) else ids
    if array.dtype == object:
        raise TypeError(f"{name}: expected a list of token-id lists or a 2-D integer array, got {type(ids).__name__}")
    if array.ndim != 2:
        hint = " (wrap a single sentence as [ids])" if array.ndim == 1 else ""
        raise ValueError(f"{name}: expected a 2-D array (batch, length), got {array.ndim}-D shape {array.shape}{hint}")
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: token ids must be integers, got dtype {array.dtype}")
    batch, length = array.shape
    if batch == 0:
        raise ValueError(f"{name}: empty batch")
    if length == 0:
        raise ValueError(f"{name}: empty sentences (length 0)")
    _check_int32_range(array, name)
    return np.ascontiguousarray(array, dtype=np.int32), [length] * batch


def _check_int32_range(array: np.ndarray, name: str, where: str = ""):
    """Ids beyond int32 can be in no vocabulary; checked as Python ints, before any cast
    (a uint64 id of 2**64 - 1 would otherwise wrap to -1)."""
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < -(2**31) or high >= 2**31:
            raise ValueError(f"{name}: token id {high if high >= 2**31 else low}{where} is outside the vocabulary")


def _from_sequences(seqs, name: str):
    if len(seqs) == 0:
        raise ValueError(f"{name}: empty batch")
    rows = []
    for i, seq in enumerate(seqs):
        if isinstance(seq, np.ndarray):
            if seq.ndim != 1:
                raise ValueError(f"{name}: sentence {i} must be 1-D, got shape {seq.shape}")
            if seq.dtype.kind not in "iu":
                raise TypeError(f"{name}: token ids must be integers, got dtype {seq.dtype} in sentence {i}")
            _check_int32_range(seq, name, f" in sentence {i}")
            row = seq
        elif isinstance(seq, (list, tuple)):
            for tok in seq:
                if not is_integer(tok):
                    raise TypeError(
                        f"{name}: token ids must be integers, got {describe(tok)} in sentence {i}"
                    )
                if not -(2**31) <= tok < 2**31:  # before NumPy converts it (OverflowError past int64)
                    raise ValueError(f"{name}: token id {int(tok)} in sentence {i} is outside the vocabulary")
            row = np.asarray(seq, dtype=np.int64)
        else:
            raise TypeError(
                f"{name}: sentence {i} must be a list of token ids, got {type(seq).__name__}"
                + (" (pass a list of sentences, e.g. [[5, 6, 2]])" if isinstance(seq, numbers.Integral) else "")
            )
        if row.size == 0:
            raise ValueError(f"{name}: sentence {i} is empty")
        rows.append(row)
    lengths = [int(r.size) for r in rows]
    out = np.zeros((len(rows), max(lengths)), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    _check_int32_range(out, name)
    return out.astype(np.int32), lengths
