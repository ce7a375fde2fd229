"""Loads the compiled core, and describes the CUDA backend without loading it.

libscipy_openblas.so comes from the scipy-openblas32 wheel; _core finds it through
its RPATH, and loading it here first (by absolute path) makes that independent of
where pip put the two packages. Nothing here touches CUDA: libtformer_cuda.so and
cuBLAS are loaded by the core only when a CUDA device is asked for.
"""
import ctypes
import json
import os

blas_library = None  # the libscipy_openblas.so loaded, for build_info()
try:
    import scipy_openblas32 as _openblas

    _lib = os.path.join(_openblas.get_lib_dir(), "libscipy_openblas.so")
    if os.path.exists(_lib):
        ctypes.CDLL(_lib, mode=ctypes.RTLD_GLOBAL)
        blas_library = _lib
except ImportError:  # pragma: no cover - a dependency; _core's RPATH may still find it
    pass

from . import _core  # noqa: E402


def cuda_build():
    """What libtformer_cuda.so was built with (libtformer_cuda.json, written by CMake
    next to it), or None when this build has no CUDA backend."""
    path = os.path.join(os.path.dirname(_core.__file__), "libtformer_cuda.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        built = json.load(f)
    archs = []
    for arch in built["archs"].split(";"):  # CMake's list: "80-real;...;90" (no suffix: + PTX)
        number = arch.split("-")[0]
        archs.append(f"sm_{number}")
        if not arch.endswith("-real"):
            archs.append(f"compute_{number}")
    return {
        "cuda_version": built["cuda_version"],
        "cublas_version": built["cublas_version"],
        "archs": archs,
        "fatbin_compression": built["fatbin_compression"],
        "library": os.path.join(os.path.dirname(path), "libtformer_cuda.so"),
    }


__all__ = ["_core", "blas_library", "cuda_build"]
