"""tformer: a Transformer engine for sequence-to-sequence models.

    >>> import tformer
    >>> model = tformer.from_huggingface("path/to/opus-mt-fr-en")
    >>> logits = model.forward([[432, 11, 0]], [[59513]])
"""
from typing import Any

from ._native import _core, blas_library as _blas_library, cuda_build as _cuda_build
from .config import TransformerConfig
from .convert.huggingface import from_huggingface
from .model import Transformer
from .translator import Translator
from .engine import Engine, DeadlineExceeded
from .train import Trainer
from .loss_scale import LossScaler
from . import ops

__version__ = _core.__version__

set_num_threads = _core.set_num_threads
get_num_threads = _core.get_num_threads
empty_cache = _core.empty_cache
CancelToken = _core.CancelToken  # generate(..., cancel=token): stop a call from another thread


def cuda_available() -> bool:
    """True when the CUDA backend is built, loads, and sees at least one GPU."""
    return _core.cuda_available()


def _int8_kernel() -> str:
    """The int8 GEMM kernel CPUID chose ('avx512_vnni', 'avx_vnni', 'avx2', 'base'), or why
    none could be (a TFORMER_INT8_KERNEL this CPU lacks)."""
    try:
        return _core.ops.cpu_int8_kernel()
    except ValueError as e:
        return f"unavailable: {e}"


def build_info() -> dict[str, Any]:
    """What this build contains and what it finds at run time.

    cuda_build: the CUDA and cuBLAS versions libtformer_cuda.so was built with and the
    GPU architectures it has code for (sm_XY: machine code, compute_XY: PTX), or None.
    blas_threads: matrix products are split over tformer's OpenMP pool (OpenBLAS itself
    runs single-threaded inside each part), so it equals num_threads.
    int8_kernel: the int8 GEMM kernel int8 models run on this CPU (docs/QUANTIZATION.md).
    """
    info = {
        "version": __version__,
        "cuda": _core.cuda_backend_built(),
        "cuda_build": _cuda_build(),
        "cuda_available": _core.cuda_available(),
        "blas": _core.blas_info(),
        "blas_library": _blas_library,
        "blas_threads": _core.get_num_threads(),
        "num_threads": _core.get_num_threads(),
        "int8_kernel": _int8_kernel(),
    }
    if info["cuda_available"]:
        info["cuda_backend"] = _core.cuda_backend_name()
        info["cuda_devices"] = _core.cuda_device_count()
        info["cuda_library"] = _core.cuda_library_path()   # TFORMER_CUDA_LIBRARY's file, if set
    else:
        info["cuda_unavailable_reason"] = _core.cuda_unavailable_reason()
    return info


__all__ = [
    "Transformer", "TransformerConfig", "Translator", "Trainer", "LossScaler", "from_huggingface", "ops", "set_num_threads", "get_num_threads",
    "cuda_available", "build_info", "empty_cache", "CancelToken", "Engine", "DeadlineExceeded",
]
