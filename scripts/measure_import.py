"""`import tformer` start-up cost, for docs/PACKAGING.md: fresh interpreters, interleaved
with a baseline that imports numpy only (tformer imports it), median of N runs each.
Reports wall time and the process's CPU time (user + sys, less noisy on a shared machine),
and checks every run's /proc/self/maps for CUDA libraries.

    python scripts/measure_import.py [-n 15]
"""
import argparse
import json
import statistics
import subprocess
import sys

PROBE = """
import resource, time, json
t0 = time.perf_counter()
import {module}
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
with open("/proc/self/maps") as f:
    cuda = sorted({{l.split()[-1] for l in f if any(n in l for n in ("libcuda", "libcublas", "libcudart", "libnvrtc", "libtformer_cuda"))}})
print(json.dumps({{"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "cuda": cuda}}))
"""


def run(module):
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=15)
    args = parser.parse_args()
    results = {"numpy": [], "tformer": []}
    for _ in range(args.n):
        for module in results:
            results[module].append(run(module))
    for module, runs in results.items():
        cuda = sorted({lib for r in runs for lib in r["cuda"]})
        print(f"import {module}: median wall {statistics.median(r['wall'] for r in runs) * 1e3:.0f} ms, "
              f"median process CPU {statistics.median(r['cpu'] for r in runs) * 1e3:.0f} ms "
              f"(n={len(runs)}); CUDA libraries mapped: {cuda or 'none'}")


if __name__ == "__main__":
    main()
