"""TFORMER_CUDA_LIBRARY=<path> (docs/PACKAGING.md): the core loads that CUDA backend library
instead of the packaged libtformer_cuda.so. Each case runs in a fresh interpreter, since
the backend is loaded once per process."""

import os
import subprocess
import sys
import textwrap

import tformer
import tf_testlib

ASK_FOR_CUDA = tf_testlib.ASK_FOR_CUDA + """
import json
info = tformer.build_info()
print("INFO", json.dumps({k: info.get(k) for k in ("cuda_available", "cuda_unavailable_reason", "cuda_library")}))
"""


def ask_for_cuda(library):
    env = dict(os.environ, TFORMER_CUDA_LIBRARY=str(library))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(ASK_FOR_CUDA)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "no_such_dir" / "libtformer_cuda.so"
    out = ask_for_cuda(path)
    assert f"RuntimeError: TFORMER_CUDA_LIBRARY={path}: no such file" in out, out
    assert '"cuda_available": false' in out and f"TFORMER_CUDA_LIBRARY={path}" in out.split("INFO")[1], out


def test_library_without_the_factory_names_the_path_and_symbol():
    # A real shared library that is not a tformer CUDA backend: the OpenBLAS that tformer loads.
    path = tformer.build_info()["blas_library"]
    out = ask_for_cuda(path)
    assert f"RuntimeError: TFORMER_CUDA_LIBRARY={path} has no symbol tformer_cuda_backend_create" in out, out
    assert "not a tformer CUDA backend" in out, out


def test_file_that_is_not_a_library_names_the_path_and_loader_error(tmp_path):
    path = tmp_path / "libtformer_cuda.so"
    path.write_bytes(b"not a shared library")
    out = ask_for_cuda(path)
    assert f"RuntimeError: TFORMER_CUDA_LIBRARY={path} could not be loaded: " in out, out
    assert "invalid ELF header" in out or "too short" in out, out


def test_build_info_names_the_loaded_library():
    info = tformer.build_info()
    if not info["cuda_available"]:
        assert "cuda_library" not in info and info["cuda_unavailable_reason"]
        return
    named = os.environ.get("TFORMER_CUDA_LIBRARY")
    expected = named or os.path.join(os.path.dirname(tformer._core.__file__), "libtformer_cuda.so")
    assert os.path.samefile(info["cuda_library"], expected), (info["cuda_library"], expected)
