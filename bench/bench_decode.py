"""Decoding speed of an opus-mt-fr-en-sized Marian model (random weights): tformer
against CTranslate2 (fp32 and int8) and transformers, same weights, same inputs, 2 threads
each, output length forced to 32 tokens for every system. Each engine runs in its own worker
process (OpenMP runtimes of two engines in one process slow each other down), timed
round-robin: one run of each engine in turn, only one running at a time.

  (a) latency: batch 1, 32 source tokens -> 32 target tokens, greedy
  (b) throughput: 64 sentences of 32 tokens, beam 4, batches of 16, 32 target tokens
  (c) throughput: 64 sentences, greedy, batch 32
  (d) peak memory (VmHWM) of a fresh process: import, load, one (b) batch

then the ceilings: weights read per decode step against the read bandwidth of the
threads (a 1 GiB streaming sum), FLOPs per token against a large GEMM's rate.

    python bench/bench_decode.py [--threads 2] [--repeat 5] [--skip-hf] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT_LEN = 32


def make_inputs(n, src_len, vocab, eos, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [list(map(int, rng.integers(2, vocab - 1, src_len - 1))) + [eos] for _ in range(n)]


def engine(name, model_dir, ct2_dir, threads):
    """Loads one engine (each runs in a process of its own) and returns its function
    (sources, beam, batch) -> the generated token-id lists."""
    import ct2_marian

    if name == "tformer":
        import tformer

        ours = tformer.from_huggingface(model_dir)

        def run(srcs, beam, batch):
            res = ours.generate(srcs, beam_size=beam, max_length=OUT_LEN, min_length=OUT_LEN, max_batch_size=batch)
            return [r.tokens[0] for r in res]
        return run
    if name in ("ct2-fp32", "ct2-int8"):
        import ctranslate2

        ct2 = ctranslate2.Translator(ct2_dir, device="cpu", compute_type="float32" if name == "ct2-fp32" else "int8",
                                     inter_threads=1, intra_threads=threads)

        def run(srcs, beam, batch):
            toks = [[ct2_marian.token_name(i) for i in s] for s in srcs]
            res = ct2.translate_batch(toks, beam_size=beam, max_batch_size=batch, min_decoding_length=OUT_LEN,
                                      max_decoding_length=OUT_LEN)
            return [[ct2_marian.token_id(t) for t in r.hypotheses[0]] for r in res]
        return run
    if name == "transformers":
        import torch
        from transformers import MarianMTModel

        hf = MarianMTModel.from_pretrained(model_dir).eval()

        def run(srcs, beam, batch):
            out = []
            with torch.inference_mode():
                for i in range(0, len(srcs), batch):
                    x = torch.tensor(srcs[i:i + batch])
                    seq = hf.generate(x, num_beams=beam, min_new_tokens=OUT_LEN, max_new_tokens=OUT_LEN,
                                      do_sample=False)
                    out += [s[1:].tolist() for s in seq]
            return out
        return run
    raise ValueError(f"unknown engine {name!r}")


class Worker:
    """One engine in its own process (`bench_decode.py --worker NAME`): the parent sends one
    JSON line per run, the worker answers with the seconds of that run, timed inside it (and
    the tokens when asked), so that only one engine runs at any time."""

    def __init__(self, name, model_dir, ct2_dir, threads):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--model-dir", model_dir,
               "--ct2-dir", ct2_dir, "--threads", str(threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._expect("ready")

    def _expect(self, what):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker died (see its stderr above)")
        reply = json.loads(line)
        if what not in reply:
            raise RuntimeError(f"the {self.name} worker answered {reply!r}")
        return reply

    def run(self, srcs, beam, batch, tokens=False):
        self.proc.stdin.write(json.dumps({"srcs": srcs, "beam": beam, "batch": batch, "tokens": tokens}) + "\n")
        self.proc.stdin.flush()
        return self._expect("seconds")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def worker_main(name, model_dir, ct2_dir, threads):
    """The worker's loop: load `name` alone, then run what the parent sends, until EOF."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    fn = engine(name, model_dir, ct2_dir, threads)
    if name == "tformer":
        import tformer

        tformer.set_num_threads(threads)
    elif name == "transformers":
        import torch

        torch.set_num_threads(threads)
    print(json.dumps({"ready": name}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        t0 = time.perf_counter()
        out = fn(cmd["srcs"], cmd["beam"], cmd["batch"])
        reply = {"seconds": time.perf_counter() - t0}
        if cmd["tokens"]:
            reply["tokens"] = out
        print(json.dumps(reply), flush=True)


def round_robin(workers, srcs, beam, batch, repeat):
    """Median seconds per engine: one warm-up each, then `repeat` rounds of one run each."""
    import statistics

    for w in workers.values():
        w.run(srcs, beam, batch)
    times = {k: [] for k in workers}
    for _ in range(repeat):
        for k, w in workers.items():
            times[k].append(w.run(srcs, beam, batch)["seconds"])
    return {k: statistics.median(v) for k, v in times.items()}


def read_bandwidth(threads, gib=1.0, repeat=5):
    """Best streaming-read rate (bytes/s) of `threads` threads over a `gib` GiB array:
    numpy sums its slices in parallel Python threads (the GIL is released)."""
    import threading

    import numpy as np

    x = np.ones(int(gib * (1 << 30)) // 4, np.float32)
    parts = np.array_split(x, threads)
    best = float("inf")
    for _ in range(repeat):
        ts = [threading.Thread(target=np.add.reduce, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return x.nbytes / best


def gemm_rate(rows=1024, k=2048, n=2048, repeat=10):
    """FLOP/s of a large tformer GEMM (OpenBLAS; the numpy round trip included, ~5 %),
    the machine's practical compute ceiling."""
    import numpy as np
    import tformer.ops as ops

    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        ops.gemm(a, w, trans_b=True)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * rows * k * n / best


def ceilings(threads):
    """read_bandwidth and gemm_rate, measured in a fresh process: a child inherits its
    parent's peak RSS, which the 1 GiB array would spoil for the memory figures (d)."""
    code = f"""
import json, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import bench_decode as b, tformer
tformer.set_num_threads({threads})
print(json.dumps({{"read_bandwidth": b.read_bandwidth({threads}), "gemm_flops": b.gemm_rate()}}))
"""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def decoder_step_weights(model_dir):
    """Weights (floats) one decode step reads per row: decoder layers + output projection
    (the cross-attention K/V projections run once per source, not per step)."""
    from transformers import MarianConfig

    c = MarianConfig.from_pretrained(model_dir)
    d, f = c.d_model, c.decoder_ffn_dim
    layer = 4 * d * d + 2 * d * d + 2 * d * f  # self q/k/v/out, cross q/out, FFN
    return c.decoder_layers * layer + c.vocab_size * d


def peak_rss(model_dir, ct2_dir, engine, threads):
    """Peak RSS (MiB) of a fresh process that loads `engine` and runs one (b) batch."""
    code = f"""
import os, resource, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import bench_decode as b
srcs = b.make_inputs(16, 32, 59514, 0)
b.engine({engine!r}, {model_dir!r}, {ct2_dir!r}, {threads})(srcs, 4, 16)
# VmHWM, the peak of this process's own memory: ru_maxrss would also count the parent's
# peak, which Linux carries over into a child through fork/vfork and exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-hf", action="store_true", help="leave transformers out (it is slow)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "tformer-bench-opus-mt-fr-en"))
    ap.add_argument("--json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one engine for the parent
    ap.add_argument("--ct2-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker, args.model_dir, args.ct2_dir, args.threads)

    # The parent only converts and orchestrates: it loads no engine.
    import ct2_marian

    model_dir = common.make_marian_dir(args.model_dir)
    ct2_dir = ct2_marian.convert(model_dir, model_dir + "-ct2", 59514)
    names = ["tformer", "ct2-fp32", "ct2-int8"] + ([] if args.skip_hf else ["transformers"])
    workers = {n: Worker(n, model_dir, ct2_dir, args.threads) for n in names}

    one = make_inputs(1, 32, 59514, 0)
    many = make_inputs(64, 32, 59514, 0, seed=1)
    # Same numbers first: tformer's greedy tokens against CTranslate2 fp32's (the last
    # token differs where transformers' forced EOS applies: tformer follows transformers).
    a = workers["tformer"].run(one, 1, 1, tokens=True)["tokens"][0]
    b = workers["ct2-fp32"].run(one, 1, 1, tokens=True)["tokens"][0]
    agree = sum(x == y for x, y in zip(a[:-1], b[:-1])) / max(1, len(a) - 1)

    scenarios = {
        "a_latency_b1_greedy": (one, 1, 1),
        "b_beam4_b16": (many, 4, 16),
        "c_greedy_b32": (many, 1, 32),
    }
    results = {"threads": args.threads, "greedy_agreement_with_ct2": agree}
    for name, (srcs, beam, batch) in scenarios.items():
        for w in workers.values():  # every output must be exactly OUT_LEN tokens
            lens = {len(t) for t in w.run(srcs[:batch], beam, batch, tokens=True)["tokens"]}
            assert lens <= {OUT_LEN, OUT_LEN - 1}, (name, lens)
        times = round_robin(workers, srcs, beam, batch, args.repeat)
        tokens = len(srcs) * OUT_LEN
        results[name] = {k: {"seconds": t, "tokens_per_s": tokens / t} for k, t in times.items()}
    for w in workers.values():
        w.close()
    # Ceilings: weight bytes per step against the read bandwidth, FLOPs per output token
    # against a large GEMM's rate (2 FLOPs per weight per decoder row; attention aside).
    weights = decoder_step_weights(model_dir)
    results["ceilings"] = {"step_weights": weights, **ceilings(args.threads)}
    if not args.skip_memory:
        results["d_peak_rss_mib"] = {k: peak_rss(model_dir, ct2_dir, k, args.threads) for k in workers}

    print(f"opus-mt-fr-en size, {args.threads} threads; tformer greedy agrees with CT2 fp32 on {agree:.0%} of tokens")
    for name in scenarios:
        r = results[name]
        line = "  ".join(f"{k} {v['tokens_per_s']:7.1f} tok/s" for k, v in r.items())
        base = r["tformer"]["seconds"]
        ratios = "  ".join(f"{k}/tformer {v['seconds'] / base:.2f}x" for k, v in r.items() if k != "tformer")
        print(f"{name:22s} {line}\n{'':22s} {ratios}")
    ceil = results["ceilings"]
    bw, peak = ceil["read_bandwidth"], ceil["gemm_flops"]
    print(f"ceilings: {weights / 1e6:.1f} M weights ({4 * weights / 1e6:.0f} MB) per decode step; read bandwidth "
          f"{bw / 1e9:.1f} GB/s ({args.threads} threads); large GEMM {peak / 1e9:.0f} GFLOP/s")
    for name, rows_per_token in (("a_latency_b1_greedy", 1), ("b_beam4_b16", 4), ("c_greedy_b32", 1)):
        tps = results[name]["tformer"]["tokens_per_s"]
        steps = tps / rows_per_token if name.startswith("a") else None
        flops = tps * rows_per_token * 2 * weights
        line = f"  {name:22s} tformer {flops / 1e9:6.1f} GFLOP/s = {flops / peak:.0%} of the GEMM rate"
        if steps:
            line += f"; weights read at {steps * 4 * weights / 1e9:.1f} GB/s = {steps * 4 * weights / bw:.0%} of bandwidth"
            line += f" (ceiling {bw / (4 * weights):.0f} tok/s)"
        print(line)
    if "d_peak_rss_mib" in results:
        print("d_peak_rss_mib        " + "  ".join(f"{k} {v:.0f}" for k, v in results["d_peak_rss_mib"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
