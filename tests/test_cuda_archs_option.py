"""TFORMER_CUDA_ARCHS, the build's list of CUDA architectures: a bad entry stops the
configure step with a message naming it (cmake/cuda_backend.cmake checks the list before
it looks for nvcc, so this runs on machines without CUDA too)."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def configure(tmp_path, env_archs=None, define=None):
    cmake = shutil.which("cmake")
    if cmake is None:  # the test requirements install cmake
        pytest.fail("cmake is not on PATH (pip install cmake)")
    env = dict(os.environ)
    env.pop("TFORMER_CUDA_ARCHS", None)
    if env_archs is not None:
        env["TFORMER_CUDA_ARCHS"] = env_archs
    cmd = [cmake, "-S", str(ROOT / "cmake" / "cuda_standalone"), "-B", str(tmp_path / "b")]
    if define is not None:
        cmd.append(f"-DTFORMER_CUDA_ARCHS={define}")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def flat(result):
    """cmake's output with its message line breaks undone."""
    return " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize("bad", ["75", "sm_90", "90x", "8"])
def test_bad_arch_from_environment_is_refused(tmp_path, bad):
    r = configure(tmp_path, env_archs=f"80;{bad}")
    assert r.returncode != 0
    assert f"TFORMER_CUDA_ARCHS entry '{bad}' is not a supported CUDA architecture" in flat(r)


def test_bad_arch_from_define_is_refused(tmp_path):
    r = configure(tmp_path, define="70;80")
    assert r.returncode != 0
    assert "TFORMER_CUDA_ARCHS entry '70' is not a supported CUDA architecture" in flat(r)
