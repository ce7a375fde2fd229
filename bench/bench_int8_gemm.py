"""int8 GEMMs C = x @ dequant(W)^T (W a row-major (n, k) Linear weight, int8 per-row scales,
x float32 quantized per row on entry) on the shapes of an opus-mt-sized model: each of
tformer's int8 kernels against tformer's fp32 gemm and the int8 dynamic linear of FBGEMM
and oneDNN (both through torch's CPU build: torch.ops.quantized.linear_dynamic with int8
per-channel weights, per-tensor uint8 activations quantized on entry, the quantized engine
set to 'fbgemm' / 'onednn').

Every engine runs in a worker process of its own (the int8 kernel is chosen once per
process by TFORMER_INT8_KERNEL; torch's OpenMP runtime stays out of ours). The parent
interleaves the workers shape by shape, round by round, and reports per engine the MINIMUM
over rounds of the mean time of a burst of calls (~3 ms of work), which is what survives
other load on shared cores (with --threads 1, the worker thread's CPU time: the clock least
sensitive to that load; with more threads, wall time). Times are of the Python call, output allocation included, the
same for every engine (a few microseconds: visible only on the smallest shapes).

    python bench/bench_int8_gemm.py [--threads 2] [--repeat 7] [--rows 1,4,8,16,32,64,128,1024]
        [--engines avx512_vnni,avx_vnni,avx2,fp32,fbgemm,onednn] [--shapes k:n,...] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ENGINES = ["avx512_vnni", "avx_vnni", "avx2", "fp32", "fbgemm", "onednn"]
SHAPES = [(512, 1536), (512, 512), (512, 1024), (512, 2048), (2048, 512), (512, 59514)]  # (k, n)

WORKER = r"""
import json, sys, time, warnings
import numpy as np
engine, threads = sys.argv[1], int(sys.argv[2])
warnings.filterwarnings("ignore", message="torch.quantize_per")  # deprecated API, still FBGEMM's path
# One thread runs in the worker's own thread: its CPU time is the least load-sensitive
# clock. With more threads, wall time.
clock = time.thread_time if threads == 1 else time.perf_counter
rng = np.random.default_rng(0)
if engine in ("fbgemm", "onednn"):
    import torch
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
    def prepare(w, bias):
        wt = torch.from_numpy(w)
        scale = (wt.abs().amax(dim=1) / 127).double().clamp_min(1e-12)
        qw = torch.quantize_per_channel(wt, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, torch.from_numpy(bias))
        return lambda x: torch.ops.quantized.linear_dynamic(x, packed, False)
    def activations(a):
        return torch.from_numpy(a)
else:
    import tformer
    from tformer import ops
    tformer.set_num_threads(threads)
    if engine == "fp32":
        def prepare(w, bias):
            return lambda x: ops.gemm(x, w, trans_b=True)  # no bias: its add is not the point here
    else:
        assert ops.cpu_int8_kernel() == engine, (ops.cpu_int8_kernel(), engine)
        def prepare(w, bias):
            q, s = ops.quantize_rows(w)
            return lambda x: ops.int8_linear(x, q, s, bias)
    def activations(a):
        return a
prepared = {}
for line in sys.stdin:
    m, k, n, reps = map(int, line.split())
    if (k, n) not in prepared:
        prepared.clear()  # one weight at a time: the vocabulary projection is 240 MB in fp32
        w = rng.standard_normal((n, k)).astype(np.float32) * 0.05
        prepared[(k, n)] = prepare(w, rng.standard_normal(n).astype(np.float32))
    fn = prepared[(k, n)]
    x = activations(rng.standard_normal((m, k)).astype(np.float32))
    fn(x)
    t0 = clock()
    for _ in range(reps):
        fn(x)
    print(json.dumps((clock() - t0) / reps), flush=True)
"""


def start(engine, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if engine not in ("fp32", "fbgemm", "onednn"):
        env["TFORMER_INT8_KERNEL"] = engine
    return subprocess.Popen([sys.executable, "-c", WORKER, engine, str(threads)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7, help="interleaved rounds per shape")
    ap.add_argument("--rows", default="1,4,8,16,32,64,128,1024")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--shapes", default=None, help="k:n,k:n,... (default: the opus-mt shapes)")
    ap.add_argument("--burst", type=float, default=3.0, help="milliseconds of work per timed burst")
    ap.add_argument("--json")
    args = ap.parse_args()
    shapes = SHAPES if not args.shapes else [tuple(map(int, s.split(":"))) for s in args.shapes.split(",")]
    names = args.engines.split(",")
    workers = {n: start(n, args.threads) for n in names}
    clock = "thread CPU time" if args.threads == 1 else "wall time"
    print(f"{args.threads} threads; min {clock} over {args.repeat} interleaved rounds of a burst's mean; GOP/s from it")
    results = common.gemm_sweep(workers, shapes, list(map(int, args.rows.split(","))), args.repeat,
                                lambda flops: max(1, min(200, int(args.burst * 1e-3 / (flops / 2e11 + 2e-6)) + 1)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
