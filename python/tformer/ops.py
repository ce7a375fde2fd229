"""Single ops of the core on numpy arrays, for tests and experiments.

Each takes `device="cpu"` (or "cuda") and `dtype="float32"`, copies its inputs to
the device, runs the op and returns new float32 numpy arrays (inputs are never
modified). Training ops: gradients of parameters accumulate into the given initial
values, which default to zeros; gradients of activations are returned.

This module re-exports every op that the core binds (tformer._core.ops; each op
family's bindings live in python/bindings/ops/<family>.cpp), with its docstring:

"""
from typing import TYPE_CHECKING

from ._native import _core

if TYPE_CHECKING:  # the ops' signatures, for type checkers (the stubs of tformer._core.ops)
    from ._core.ops import *  # noqa: F401,F403


def _summary(fn):
    """The op's own summary: its docstring after pybind11's signature line."""
    doc = (fn.__doc__ or "").strip()
    head, _, rest = doc.partition("\n")
    return (rest.strip() or head).replace("\n", "\n  ")


__all__ = sorted(name for name in dir(_core.ops) if not name.startswith("_"))
globals().update({name: getattr(_core.ops, name) for name in __all__})
__doc__ += "\n".join(f"- {name}: {_summary(getattr(_core.ops, name))}" for name in __all__) + "\n"
