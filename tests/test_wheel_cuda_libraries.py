"""How the installed package finds the CUDA libraries for device="cuda": cuBLAS from the
nvidia-cublas wheel (`pip install "tformer[cuda]"`) or the system, and the error that
names the missing library when there is none. The CUDA libraries are hidden by running
a copy of the installed package that has no nvidia/ directory next to it."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import tformer
import tf_testlib

PACKAGE_DIR = os.path.dirname(tformer._core.__file__)   # site-packages/tformer: _core, libtformer_cuda.so
HAS_CUDA_BACKEND = os.path.exists(os.path.join(PACKAGE_DIR, "libtformer_cuda.so"))
needs_cuda_backend = pytest.mark.skipif(not HAS_CUDA_BACKEND, reason="this build has no libtformer_cuda.so")

ASK_FOR_CUDA = tf_testlib.ASK_FOR_CUDA + """
with open("/proc/self/maps") as f:
    print("MAPS", sorted({l.split()[-1] for l in f if "libcublas" in l}))
"""


def cuda_major():
    return tformer.build_info()["cuda_build"]["cuda_version"].split(".")[0]


def clean_env():
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("LD_PRELOAD", None)
    env.pop("TFORMER_CUDA_LIBRARY", None)   # the packaged library is what these tests are about
    return env


def copy_package(dest):
    """A copy of the installed tformer (Python files, _core, libtformer_cuda.so and
    auditwheel's tformer.libs) in dest, with no nvidia/ directory beside it."""
    shutil.copytree(os.path.dirname(tformer.__file__), dest / "tformer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in os.listdir(PACKAGE_DIR):   # an editable install keeps these apart from the .py files
        if name.endswith((".so", ".json")) and not (dest / "tformer" / name).exists():
            shutil.copy2(os.path.join(PACKAGE_DIR, name), dest / "tformer" / name)
    libs = os.path.join(os.path.dirname(PACKAGE_DIR), "tformer.libs")
    if os.path.isdir(libs):
        shutil.copytree(libs, dest / "tformer.libs")


def run_copy(dest, code):
    """Runs code with the copy in dest as `tformer` (-S: no .pth, so no editable-install hook)."""
    import numpy
    import safetensors
    import scipy_openblas32
    deps = sorted({os.path.dirname(os.path.dirname(m.__file__)) for m in (numpy, safetensors, scipy_openblas32)})
    prelude = f"import sys; sys.path[:0] = {[str(dest)] + deps!r}\n"
    proc = subprocess.run([sys.executable, "-S", "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def system_has_cublas():
    probe = f"import ctypes; ctypes.CDLL('libcublasLt.so.{cuda_major()}'); ctypes.CDLL('libcublas.so.{cuda_major()}')"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, env=clean_env()).returncode == 0


@needs_cuda_backend
def test_missing_cublas_names_library_and_extra(tmp_path):
    if system_has_cublas():
        pytest.skip("this machine's system library path has cuBLAS, so it cannot be hidden")
    copy_package(tmp_path)
    out = run_copy(tmp_path, textwrap.dedent(ASK_FOR_CUDA)
                   + f"assert tformer.__file__.startswith({str(tmp_path)!r}), tformer.__file__\n")
    major = cuda_major()
    assert "RuntimeError:" in out, out
    assert f"libcublas.so.{major}" in out and f"libcublasLt.so.{major}" in out, out
    assert "was not found" in out, out
    assert 'pip install "tformer[cuda]"' in out, out


@needs_cuda_backend
def test_unloadable_cublas_names_file_and_extra(tmp_path):
    copy_package(tmp_path)
    lib_dir = tmp_path / "nvidia" / f"cu{cuda_major()}" / "lib"
    lib_dir.mkdir(parents=True)
    for name in (f"libcublas.so.{cuda_major()}", f"libcublasLt.so.{cuda_major()}"):
        (lib_dir / name).write_bytes(b"not a shared library")   # a broken or foreign install
    out = run_copy(tmp_path, ASK_FOR_CUDA)
    assert "RuntimeError:" in out, out
    assert str(lib_dir / f"libcublasLt.so.{cuda_major()}") in out and "could not be loaded" in out, out
    assert 'pip install "tformer[cuda]"' in out, out


@needs_cuda_backend
def test_cublas_from_nvidia_wheel_is_found():
    wheel_lib = os.path.join(os.path.dirname(PACKAGE_DIR), "nvidia", f"cu{cuda_major()}", "lib")
    if not os.path.exists(os.path.join(wheel_lib, f"libcublas.so.{cuda_major()}")):
        pytest.skip('the nvidia-cublas wheel is not installed (no "tformer[cuda]")')
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(ASK_FOR_CUDA)], capture_output=True, text=True,
                          timeout=300, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    # cuBLAS loaded, so what is left is the driver or the GPU (or nothing, on a GPU machine).
    assert "libcublas" not in proc.stdout.split("MAPS")[0], proc.stdout
    assert os.path.join(wheel_lib, f"libcublasLt.so.{cuda_major()}") in proc.stdout.split("MAPS")[1], proc.stdout


@pytest.mark.skipif(HAS_CUDA_BACKEND, reason="this build has the CUDA backend")
def test_build_without_cuda_backend_says_so():
    # A fresh interpreter without TFORMER_CUDA_LIBRARY (the emulated CUDA run sets it).
    code = """
        import tformer
        try:
            tformer._core.check_device("cuda")
        except RuntimeError as e:
            print("RuntimeError:", e)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeError:" in proc.stdout and "no CUDA backend" in proc.stdout, proc.stdout
