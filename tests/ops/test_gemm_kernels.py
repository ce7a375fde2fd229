"""The CPU gemm's own kernels against float64 NumPy, on every path and instruction set:

* paths: the decode-step kernel gemm_rows (A @ W^T, <= 256 rows: its narrow kernel up to 8
  rows, the packed one above; "packed" forces the packed one for every row count with
  TFORMER_ROWS_GEMM_NARROW_ROWS=0), and OpenBLAS for every shape (forced with
  TFORMER_ROWS_GEMM_MAX_ROWS=0);
* instruction sets: TFORMER_CPU_ISA=avx512 / avx2 / base (each a fresh process, as the
  choice is made once), where the CPU has them;
* sizes not multiples of the vector width (m, n, k), alpha/beta, and leading dimensions
  larger than the rows (lda/ldb/ldc) through the C entry tformer_test_cpu_sgemm, since
  ops.gemm only passes contiguous arrays.

Tolerance as in test_gemm.py: |out - ref| <= 1e-5 * (|alpha| |A| @ |B| + |beta| |C|).
"""
import json
import os
import subprocess
import sys

import pytest

from tf_testlib import cpu_has

PATHS = {
    "openblas": {"TFORMER_ROWS_GEMM_MAX_ROWS": "0"},
    "packed": {"TFORMER_ROWS_GEMM_NARROW_ROWS": "0"},
    "default": {},
}

CHECK = r"""
import ctypes, json, sys
import numpy as np
import tformer
from tformer import _core, ops

lib = ctypes.CDLL(_core.__file__)
fn = lib.tformer_test_cpu_sgemm
i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
fn.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, i64, f32, ptr, i64, ptr, i64, f32, ptr, i64]
fn.restype = ctypes.c_int
ops.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # backend set-up (threads)

def padded(rng, rows, cols, extra):
    # A (rows, cols) view with leading dimension cols + extra, the padding poisoned.
    full = np.full((rows, cols + extra), np.nan, np.float32)
    full[:, :cols] = rng.standard_normal((rows, cols)).astype(np.float32)
    return full

failures = []
cases = json.loads(sys.argv[1])
for m, n, k, trans_b, alpha, beta, extra in cases:
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    a = padded(rng, m, k, extra)
    b = padded(rng, n, k, extra) if trans_b else padded(rng, k, n, extra)
    c = padded(rng, m, n, extra)
    if beta == 0.0:
        c[:, :n] = np.nan  # beta = 0: C is not read
    a_op = a[:, :k].astype(np.float64)
    b_op = (b[:, :k].T if trans_b else b[:, :n]).astype(np.float64)
    ref = alpha * (a_op @ b_op)
    bound = 1e-5 * abs(alpha) * (np.abs(a_op) @ np.abs(b_op))
    if beta != 0.0:
        ref += beta * c[:, :n].astype(np.float64)
        bound += 1e-5 * abs(beta) * np.abs(c[:, :n].astype(np.float64))
    rc = fn(0, int(trans_b), m, n, k, alpha, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], beta,
            c.ctypes.data, c.shape[1])
    err = np.abs(c[:, :n].astype(np.float64) - ref)
    ok = rc == 0 and bool(np.all(err <= bound + 1e-30))
    pad_ok = extra == 0 or bool(np.all(np.isnan(c[:, n:])))  # nothing written past n
    if not (ok and pad_ok):
        failures.append([m, n, k, trans_b, alpha, beta, extra, rc, float(np.nanmax(err - bound)), pad_ok])
print(json.dumps({"isa": _core.blas_info().rsplit(" ", 1)[-1], "failures": failures}))
"""

# (m, n, k, trans_b, alpha, beta, extra columns of padding)
CASES = [
    (m, n, k, True, alpha, beta, extra)
    for m in (1, 2, 3, 6, 8, 16, 17, 31, 33, 48, 64, 65, 100, 129, 256)
    for n, k in ((1, 1), (5, 7), (13, 33), (37, 130), (97, 512))
    for alpha, beta, extra in ((1.0, 0.0, 0), (-0.5, 0.75, 3))
] + [(20, 24, 17, False, 1.5, -1.0, 5), (70, 9, 40, False, 1.0, 0.0, 0)]



@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("isa", ["avx512", "avx2", "base"])
def test_gemm_kernels_against_float64(isa, path):
    if not cpu_has(isa):
        pytest.skip(f"this CPU has no {isa}")  # the baseline case always runs
    env = dict(os.environ, TFORMER_CPU_ISA=isa, OMP_NUM_THREADS="2", **PATHS[path])
    out = subprocess.run([sys.executable, "-c", CHECK, json.dumps(CASES)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["isa"] == isa, result["isa"]
    assert not result["failures"], result["failures"][:10]
