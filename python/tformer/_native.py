"""Loads the compiled core, and describes the CUDA backend without loading it.

libscipy_openblas.so comes from the scipy-openblas32 wheel; _core finds it through
its RPATH, and loading it here first (by absolute path) makes that independent of
where pip put the two packages. Nothing here touches CUDA: libtformer_cuda.so and
cuBLAS are loaded by the core only when a CUDA device is asked for.
"""
import ctypes
import importlib.util
import json
import os



def _openblas_path():
    # The package's lib/ (what its get_lib_dir() returns), found without running its
    # __init__, which reads its version through importlib.metadata: ~50 ms of start-up.
    spec = importlib.util.find_spec("scipy_openblas32")
    if spec is None:  # pragma: no cover - a dependency; _core's RPATH may still find it
        return None
    for directory in spec.submodule_search_locations or []:
        path = os.path.join(directory, "lib", "libscipy_openblas.so")
        if os.path.exists(path):
            return path
    import scipy_openblas32  # pragma: no cover - another layout: ask the package

    return os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")  # pragma: no cover


def _load_single_threaded(path):
    # tformer runs OpenBLAS on one thread inside each OpenMP thread (cpp/ops/gemm.cpp), so
    # its own pool of spinning threads would only cost CPU: ~100 ms at import on 2 cores.
    # OPENBLAS_NUM_THREADS is read once, as the library loads; numpy (imported first, for
    # its own OpenBLAS) and everything loaded later see the user's setting again.
    import numpy  # noqa: F401

    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = saved


blas_library = _openblas_path()  # the libscipy_openblas.so loaded, for build_info()
if blas_library is not None:
    _load_single_threaded(blas_library)

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
