"""Shared by the GPU benchmarks (bench_attention.py, bench_train_gpu.py, bench_decode_gpu.py):
command-line options, the machine's description, device synchronisation, and the timing rule
(warm up, n calls between two synchronisations, median of repeats, engines interleaved)."""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

# transformers' and huggingface_hub's progress bars would fill the logs of the device run.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)


def parser(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --smoke: tests the script)")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, seconds; float32 on cpu")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no new case after this many seconds (the ones left are listed as skipped)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of both engines (default: torch's)")
    return ap


def check_args(args, ap):
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        ap.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if args.repeats is not None and args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None:
        import common

        common.set_threads(args.threads)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def require_device(device: str):
    """Exit with the reason when tformer or torch cannot use `device`."""
    import torch
    import tformer

    if device.startswith("cuda"):
        if not tformer.cuda_available():
            sys.exit(f"tformer cannot use {device}: {tformer.build_info().get('cuda_unavailable_reason') or 'no CUDA backend'}")
        if not torch.cuda.is_available():
            sys.exit(f"torch cannot use {device}: torch {torch.__version__} sees no GPU")


def machine(device: str) -> dict:
    import torch
    import tformer

    info = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
            "tformer": tformer.__version__, "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
    else:
        info.update(gpu=None, cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info


def synchronizer(device: str):
    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def loop_runner(fn, sync):
    """run(n): seconds for n calls of fn between two synchronisations."""
    def run(n):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return time.perf_counter() - t0
    return run


def per_call(runs: dict, repeats: int, min_repeat_s: float = 0.02, max_iters: int = 200) -> dict:
    """Median seconds per call of each engine. runs: name -> run(n) (seconds for n calls
    between two synchronisations). Each engine is warmed up (one call) and probed (one
    more) to pick n so that one repeat lasts >= min_repeat_s; then the engines take turns,
    repeat by repeat, so that drift of the machine hits all alike."""
    iters = {}
    for name, run in runs.items():
        run(1)
        t = run(1)
        iters[name] = max(1, min(max_iters, math.ceil(min_repeat_s / max(t, 1e-9))))
    samples = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(run(iters[name]) / iters[name])
    return {name: {"s": statistics.median(v), "iters": iters[name], "samples": v} for name, v in samples.items()}


def rel_err(a, b) -> float:
    """||a - b|| / ||b|| in float64."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


class Budget:
    """Wall-clock allowance of a run: cases are started only while time is left."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def exhausted(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds


def write_json(path, obj):
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, indent=2, default=str)


def verdict(value, target, higher_is_better=True) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else "MISSES"
