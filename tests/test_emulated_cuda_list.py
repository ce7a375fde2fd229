"""The emulated CUDA run's list and guards (conftest.py, tests/emulated_cuda.txt): every pattern
names a test that exists, and TFORMER_TEST_EMULATED_CUDA=1 refuses to run when "cuda" is not
the emulator's library, instead of skipping every cuda case."""

import glob
import os
import re
import subprocess
import sys

from conftest import EMULATED_LIST, emulated_cuda_patterns, _pattern_regex

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def run_pytest(args, env):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_pattern_matches_a_collected_test():
    patterns = emulated_cuda_patterns()
    assert patterns, EMULATED_LIST
    files = set()
    for f in sorted({p.split("::", 1)[0] for p in patterns}):   # a file, or a glob (tests/ops/*)
        found = [os.path.relpath(g, ROOT) for g in glob.glob(os.path.join(ROOT, f))
                 if os.path.basename(g).startswith("test_") and g.endswith(".py")]
        assert found, f"{EMULATED_LIST}: {f} does not exist"
        files.update(found)
    files = sorted(files)
    env = {k: v for k, v in os.environ.items() if k not in ("TFORMER_TEST_EMULATED_CUDA",)}
    proc = run_pytest(["--collect-only", *files], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line]
    for p in patterns:
        rx = _pattern_regex(p)
        assert any(rx.match(i) for i in ids), f"{EMULATED_LIST}: {p} matches no test"
        assert any(rx.match(i) and "cuda" in i for i in ids), f"{EMULATED_LIST}: {p} matches no cuda case"


def test_pattern_syntax():
    rx = _pattern_regex("tests/ops/test_gemm.py::*[cuda*")
    assert rx.match("tests/ops/test_gemm.py::test_gemm_shapes[cuda-float32]")
    assert not rx.match("tests/ops/test_gemm.py::test_gemm_shapes[cpu-float32]")
    rx = _pattern_regex("tests/ops/*::*cuda*")   # a directory: every file's cuda cases
    assert rx.match("tests/ops/test_gemm.py::test_gemm_shapes[cuda-float32]")
    assert rx.match("tests/ops/test_dropout_rng.py::test_cuda_dropout_equals_cpu[float16]")
    assert not rx.match("tests/ops/test_gemm.py::test_gemm_shapes[cpu-float32]")
    assert not rx.match("tests/test_api.py::test_x[cuda]")
    assert not re.search(r"\[", rx.pattern.replace(r"\[", ""))   # brackets are literal, not a class


def test_emulated_run_refuses_without_the_emulator(tmp_path):
    env = dict(os.environ, TFORMER_TEST_EMULATED_CUDA="1", TFORMER_CUDA_LIBRARY=str(tmp_path / "missing.so"))
    proc = run_pytest(["tests/test_emulated_cuda_list.py::test_pattern_syntax"], env)
    assert proc.returncode == 4, proc.stdout + proc.stderr          # pytest's usage error: nothing ran
    assert "TFORMER_TEST_EMULATED_CUDA=1 needs TFORMER_CUDA_LIBRARY" in proc.stderr, proc.stderr
    assert "missing.so: no such file" in proc.stderr, proc.stderr
