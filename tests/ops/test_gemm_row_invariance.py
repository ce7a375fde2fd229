"""The CPU gemm's decode-step path (A @ W^T, up to 256 rows: cpp/ops/kernels/gemm_rows.cpp)
is ROW-INVARIANT: a row of C has the same bits computed alone (m = 1) as inside any m up
to 256, at any position among the rows, with 1 or 2 threads. The in-flight engine relies
on it (a request's result must not depend on what shares its decode steps).

Each instruction set runs in a fresh process (TFORMER_CPU_ISA caps the choice, made once);
the baseline build always runs, AVX2 / AVX-512 where the CPU has them. The results are
also checked against float64 NumPy (bound as in test_gemm.py).
"""
import json
import os
import subprocess
import sys

import pytest

from tf_testlib import cpu_has

CHECK = r"""
import json, sys
import numpy as np
import tformer
from tformer import _core, ops

cases = json.loads(sys.argv[1])
failures = []

def gemm(a, w, threads, alpha=1.0, beta=0.0, c=None):
    tformer.set_num_threads(threads)
    return ops.gemm(a, w, trans_b=True, alpha=alpha, beta=beta, c=c)

for k, n, alpha, beta in cases:
    rng = np.random.default_rng(k * 1009 + n)
    w = rng.standard_normal((n, k)).astype(np.float32)
    pool = rng.standard_normal((256, k)).astype(np.float32)
    cpool = rng.standard_normal((256, n)).astype(np.float32)
    # Each row alone: the reference bits.
    alone = np.stack([gemm(pool[i:i + 1], w, 1, alpha, beta, cpool[i:i + 1])[0] for i in range(256)])
    # Against float64 NumPy.
    ref = alpha * (pool.astype(np.float64) @ w.T.astype(np.float64)) + beta * cpool
    bound = 1e-5 * (abs(alpha) * (np.abs(pool.astype(np.float64)) @ np.abs(w.T.astype(np.float64)))
                    + abs(beta) * np.abs(cpool))
    err = np.abs(alone - ref)
    if not np.all(err <= bound + 1e-30):
        failures.append(["accuracy", k, n, float(np.max(err - bound))])
    for m in (2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33, 64, 100, 127, 128, 129, 200, 255, 256):
        for threads in (1, 2):
            # The rows of the pool in a shuffled order, so each row lands at a new position.
            order = rng.permutation(256)[:m]
            out = gemm(pool[order], w, threads, alpha, beta, cpool[order])
            bad = np.nonzero(np.any(out.view(np.uint32) != alone[order].view(np.uint32), axis=1))[0]
            if bad.size:
                failures.append(["rows differ", k, n, m, threads, bad[:5].tolist()])
print(json.dumps({"isa": _core.blas_info().rsplit(" ", 1)[-1], "failures": failures}))
"""

# (k, n, alpha, beta): k below, at and past the vector widths (8, 16) with tails; n past
# every micro-tile width and panel; the model sizes; k past a slice (512); alpha / beta.
CASES = [(1, 5, 1.0, 0.0), (7, 3, 1.0, 0.0), (16, 29, 1.0, 0.0), (37, 50, -0.5, 0.75), (130, 97, 1.0, 0.0),
         (512, 61, 1.0, 0.0), (515, 26, 2.0, 1.0), (1100, 37, 1.0, 0.0), (2048, 9, 1.0, 0.0)]



@pytest.mark.parametrize("isa", ["avx512", "avx2", "base"])
def test_gemm_rows_are_bit_identical_alone_and_in_any_step(isa):
    if not cpu_has(isa):
        pytest.skip(f"this CPU has no {isa}")  # the baseline case always runs
    env = dict(os.environ, TFORMER_CPU_ISA=isa, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", CHECK, json.dumps(CASES)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["isa"] == isa, result["isa"]
    assert not result["failures"], result["failures"][:10]
