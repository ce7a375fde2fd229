"""Loads the compiled core.

libscipy_openblas.so comes from the scipy-openblas32 wheel; _core finds it through
its RPATH, and loading it here first (by absolute path) makes that independent of
where pip put the two packages.
"""
import ctypes
import os

try:
    import scipy_openblas32 as _openblas

    _lib = os.path.join(_openblas.get_lib_dir(), "libscipy_openblas.so")
    if os.path.exists(_lib):
        ctypes.CDLL(_lib, mode=ctypes.RTLD_GLOBAL)
except ImportError:  # pragma: no cover - a dependency; _core's RPATH may still find it
    pass

from . import _core  # noqa: E402

__all__ = ["_core"]
