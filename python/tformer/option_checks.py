"""Checked conversions of user values to the C++ types behind them (GenerationOptions and
friends). Every value is type- and range-checked here, before pybind11 converts it, so a
bad value raises a ValueError or TypeError that names the option and what it accepts,
never pybind11's conversion error (internal type names, object addresses).

The rules (docs/DECODING.md, "Option types"):
- integer options take Python or NumPy integers; not bools, and not floats (2.0 neither);
- float options take ints or floats that are finite and within float32's range;
- bool options take True / False (NumPy bools too), nothing else;
- token ids are integers inside the vocabulary, [0, vocab)."""
from __future__ import annotations

import math
import numbers

import numpy as np

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)

_BOUND_TEXT = {INT32_MAX: "2**31 - 1", INT64_MAX: "2**63 - 1", UINT64_MAX: "2**64 - 1"}


def describe(value) -> str:
    """The type and a short repr of a user value; a repr only for plain values, since an
    arbitrary object's repr can show its address."""
    kind = type(value).__name__
    if isinstance(value, (bool, numbers.Number, str, bytes)) or value is None:
        text = repr(value)
        return f"{kind} {text[:40] + '...' if len(text) > 40 else text}"
    return kind


# is_integer / is_real are plain bool functions on purpose: mypy holds that int and
# numbers.Integral (float and numbers.Real) cannot meet, so after an inline isinstance check
# of an int- or float-annotated value it would take the rest of the function for unreachable
# and leave it unchecked.
def is_integer(value: object) -> bool:
    """A Python or NumPy integer, not a bool (NumPy bools are not numbers.Integral)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A Python or NumPy int or float, not a bool (NumPy bools are not numbers.Real)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(name: str, value, minimum: int, maximum: int = INT64_MAX) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {describe(value)}")
    value = int(value)
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {_BOUND_TEXT.get(maximum, maximum)}, got {value}")
    return value


def real(name: str, value) -> float:
    """A finite number that float32 holds (the C++ options are floats)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be a finite number within float32's range (|x| <= {FLOAT32_MAX:.4g}), "
                         f"got {value}")
    return value


def flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def token_id(name: str, value, vocab: int, unset: str = "") -> int:
    """unset: what the option's "not set" value (None or -1) means, for the message."""
    unset = f" (None or -1: {unset})" if unset else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: token ids must be integers, got {describe(value)}{unset}")
    value = int(value)
    if not 0 <= value < vocab:
        raise ValueError(f"{name}: token id {value} is outside the target vocabulary [0, {vocab}){unset}")
    return value


def token_lists(name: str, value, vocab: int):
    """A list of token-id lists (target_prefix, bad_words_ids), each id checked."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of token-id lists, got {describe(value)}")
    out = []
    for i, seq in enumerate(value):
        if isinstance(seq, np.ndarray) and seq.ndim == 1:
            seq = seq.tolist()
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name}[{i}] must be a list of token ids, got {describe(seq)}")
        out.append([token_id(f"{name}[{i}]", t, vocab) for t in seq])
    return out
