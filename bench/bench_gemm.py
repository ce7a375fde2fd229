"""Decode-step GEMMs C = A @ W^T (W a row-major (n, k) Linear weight): tformer's
row-invariant kernel (gemm_rows, every m <= 256; "narrow" / "packed" force either of its two
kernels) against OpenBLAS, on the shapes of an opus-mt-sized model; --before [NAME=]DIR adds
the default path of another tformer build (a copy of an installed `tformer` package under DIR,
put first on PYTHONPATH) to compare kernels, as often as needed.

Each path runs in its own worker process (the paths are chosen by environment
variables read once); the parent interleaves them shape by shape, repetition by
repetition, and reports the MINIMUM time per path, which is what survives other load
on shared cores. The timed call is the C++ gemm alone (TFORMER_PROFILE's "gemm"
scope, mean over a burst of calls lasting ~3 ms, as its report has 0.1 ms resolution),
not the numpy round trip.

    python bench/bench_gemm.py [--threads 2] [--repeat 15] [--rows 1,4,16,32,64,128,256] [--before [NAME=]DIR ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PATHS = {
    # name -> environment of the worker
    "rows": {},
    "openblas": {"TFORMER_ROWS_GEMM_MAX_ROWS": "0"},
    # gemm_rows's two kernels forced (where the switch between them is measured)
    "narrow": {"TFORMER_ROWS_GEMM_NARROW_ROWS": "8"},
    "packed": {"TFORMER_ROWS_GEMM_NARROW_ROWS": "0"},
}
SHAPES = [(512, 512), (512, 1536), (512, 1024), (512, 2048), (2048, 512), (512, 59514)]  # (k, n)

WORKER = r"""
import json, sys, time
import numpy as np
import tformer
from tformer import _core, ops
tformer.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
assert _core.profile_report() is not None
def aligned(rows, cols):
    # 64-byte aligned, as tformer's tensors are (numpy's 16 would split vector loads).
    buf = np.empty(rows * cols + 16, np.float32)
    start = (-buf.ctypes.data // 4) % 16
    out = buf[start:start + rows * cols].reshape(rows, cols)
    out[...] = rng.standard_normal((rows, cols))
    return out
weights = {}
for line in sys.stdin:
    m, k, n, reps = map(int, line.split())
    if (k, n) not in weights:
        weights[(k, n)] = aligned(n, k)
    w = weights[(k, n)]
    a = aligned(m, k)
    _core.profile_reset()
    t0 = time.thread_time()
    for _ in range(reps):
        ops.gemm(a, w, trans_b=True)
    cpu = time.thread_time() - t0
    line = _core.profile_report().split()  # "gemm  12.3 ms  N calls ..."
    print(json.dumps([float(line[1]) * 1e-3 / reps, cpu / reps]), flush=True)
"""


def start(name, threads, build=None):
    env = dict(os.environ, TFORMER_PROFILE="1", OMP_NUM_THREADS=str(threads), **PATHS.get(name, {}))
    if build:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [build, env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-c", WORKER, str(threads)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15, help="interleaved rounds per shape")
    ap.add_argument("--rows", default="1,4,16,32,64,128,256")
    ap.add_argument("--paths", default="rows,openblas")
    ap.add_argument("--before", action="append", default=[],
                    help="[NAME=]DIR: a directory holding another build's tformer package; adds the path NAME "
                         "(default 'before'); repeatable")
    ap.add_argument("--shapes", default=None, help="k:n,k:n,... (default: the opus-mt decoder shapes)")
    ap.add_argument("--json")
    args = ap.parse_args()
    shapes = SHAPES if not args.shapes else [tuple(map(int, s.split(":"))) for s in args.shapes.split(",")]
    builds = dict(b.split("=", 1) if "=" in b else ("before", b) for b in args.before)
    workers = {n: start(n, args.threads) for n in args.paths.split(",")}
    workers.update({n: start(n, args.threads, d) for n, d in builds.items()})
    clock = "thread CPU time" if args.threads == 1 else "wall time"
    print(f"{args.threads} threads; min {clock} over {args.repeat} interleaved rounds; GFLOP/s from it")
    # One thread runs in the worker's own thread: its CPU time is the least load-sensitive
    # clock. With more threads, the gemm's wall time. A window of ~3 ms: 0.1 ms resolution.
    results = common.gemm_sweep(workers, shapes, list(map(int, args.rows.split(","))), args.repeat,
                                lambda flops: max(1, min(100, int(3e-3 / (flops / 2e11)) + 1)),
                                lambda reply: reply[1] if args.threads == 1 else reply[0])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
