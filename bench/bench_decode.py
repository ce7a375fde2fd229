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

    if name in ("tformer", "tformer-int8"):
        import tformer

        # int8: the model saved in tformer's int8 format (converted once, as CTranslate2's is).
        ours = tformer.from_huggingface(model_dir) if name == "tformer" else tformer.Transformer.load(int8_dir(model_dir))

        def run(srcs, beam, batch, out_len=OUT_LEN):
            res = ours.generate(srcs, beam_size=beam, max_length=out_len, min_length=out_len, max_batch_size=batch)
            return [r.tokens[0] for r in res]
        return run
    if name in ("ct2-fp32", "ct2-int8"):
        import ctranslate2

        # ct2-int8 loads the int8-converted model (its smallest footprint), compute_type int8.
        ct2 = ctranslate2.Translator(ct2_dir if name == "ct2-fp32" else ct2_dir + "-int8", device="cpu",
                                     compute_type="float32" if name == "ct2-fp32" else "int8",
                                     inter_threads=1, intra_threads=threads)

        def run(srcs, beam, batch, out_len=OUT_LEN):
            toks = [[ct2_marian.token_name(i) for i in s] for s in srcs]
            res = ct2.translate_batch(toks, beam_size=beam, max_batch_size=batch, min_decoding_length=out_len,
                                      max_decoding_length=out_len)
            return [[ct2_marian.token_id(t) for t in r.hypotheses[0]] for r in res]
        return run
    if name == "transformers":
        import torch
        from transformers import MarianMTModel

        hf = MarianMTModel.from_pretrained(model_dir).eval()

        def run(srcs, beam, batch, out_len=OUT_LEN):
            out = []
            with torch.inference_mode():
                for i in range(0, len(srcs), batch):
                    x = torch.tensor(srcs[i:i + batch])
                    seq = hf.generate(x, num_beams=beam, min_new_tokens=out_len, max_new_tokens=out_len,
                                      do_sample=False)
                    out += [s[1:].tolist() for s in seq]
            return out
        return run
    raise ValueError(f"unknown engine {name!r}")


def int8_dir(model_dir):
    return model_dir + "-tformer-int8"


def convert_int8(model_dir):
    """tformer's int8 copy of the checkpoint, saved once, in a process of its own (the
    parent loads no engine)."""
    out = int8_dir(model_dir)
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        code = f"import tformer; tformer.from_huggingface({model_dir!r}, dtype='int8').save({out!r})"
        subprocess.run([sys.executable, "-c", code], check=True)
    return out


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

    def run(self, srcs, beam, batch, tokens=False, out_len=OUT_LEN):
        cmd = {"srcs": srcs, "beam": beam, "batch": batch, "tokens": tokens, "out_len": out_len}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
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
    if name.startswith("tformer"):
        import tformer

        tformer.set_num_threads(threads)
    elif name == "transformers":
        import torch

        torch.set_num_threads(threads)
    print(json.dumps({"ready": name}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        t0 = time.perf_counter()
        out = fn(cmd["srcs"], cmd["beam"], cmd["batch"], cmd["out_len"])
        reply = {"seconds": time.perf_counter() - t0}
        if cmd["tokens"]:
            reply["tokens"] = out
        print(json.dumps(reply), flush=True)


def round_robin(workers, srcs, beam, batch, repeat, out_len=OUT_LEN):
    """Median seconds per engine: one warm-up each, then `repeat` rounds of one run each."""
    import statistics

    for w in workers.values():
        w.run(srcs, beam, batch, out_len=out_len)
    times = {k: [] for k in workers}
    for _ in range(repeat):
        for k, w in workers.items():
            times[k].append(w.run(srcs, beam, batch, out_len=out_len)["seconds"])
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
    ap.add_argument("--isa", choices=("native", "avx2"), default="native",
                    help="avx2: cap tformer (TFORMER_CPU_ISA=avx2) and CTranslate2 (CT2_FORCE_CPU_ISA=AVX2, "
                         "ONEDNN_MAX_CPU_ISA=AVX2) at AVX2")
    ap.add_argument("--engines", default="tformer,tformer-int8,ct2-fp32,ct2-int8",
                    help="comma-separated (transformers is added unless --skip-hf)")
    ap.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "tformer-bench-opus-mt-fr-en"))
    ap.add_argument("--json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one engine for the parent
    ap.add_argument("--ct2-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker, args.model_dir, args.ct2_dir, args.threads)

    # The parent only converts and orchestrates: it loads no engine.
    import ct2_marian

    if args.isa == "avx2":  # inherited by every worker and measuring process
        # CTranslate2's int8 GEMM is oneDNN's, which picks its own ISA: cap it too (else it
        # keeps running AVX-512 VNNI under CT2_FORCE_CPU_ISA=AVX2).
        os.environ.update(TFORMER_CPU_ISA="avx2", CT2_FORCE_CPU_ISA="AVX2", ONEDNN_MAX_CPU_ISA="AVX2",
                          DNNL_MAX_CPU_ISA="AVX2")
    model_dir = common.make_marian_dir(args.model_dir)
    ct2_dir = ct2_marian.convert(model_dir, model_dir + "-ct2", 59514)
    ct2_marian.convert(model_dir, ct2_dir + "-int8", 59514, quantization="int8")
    names = args.engines.split(",") + ([] if args.skip_hf else ["transformers"])
    if "tformer-int8" in names:
        convert_int8(model_dir)
    workers = {n: Worker(n, model_dir, ct2_dir, args.threads) for n in names}

    one = make_inputs(1, 32, 59514, 0)
    many = make_inputs(64, 32, 59514, 0, seed=1)
    # Same numbers first: tformer's greedy tokens against CTranslate2 fp32's (the last
    # token differs where transformers' forced EOS applies: tformer follows transformers).
    a = workers["tformer"].run(one, 1, 1, tokens=True)["tokens"][0]
    b = workers["ct2-fp32"].run(one, 1, 1, tokens=True)["tokens"][0]
    agree = sum(x == y for x, y in zip(a[:-1], b[:-1])) / max(1, len(a) - 1)

    scenarios = {
        "a_latency_b1_greedy": (one, 1, 1, OUT_LEN),
        "b_beam4_b16": (many, 4, 16, OUT_LEN),
        "c_greedy_b32": (many, 1, 32, OUT_LEN),
        # The encoder: 16 x 64 source tokens, then one greedy step (CTranslate2 has no
        # encoder-only call for a translator; the one step is ~2 % of the time).
        "e_encoder_16x64": (make_inputs(16, 64, 59514, 0, seed=2), 1, 16, 1),
    }
    results = {"threads": args.threads, "isa": args.isa, "greedy_agreement_with_ct2": agree}
    if "tformer-int8" in workers:  # int8 greedy tokens against float32's, same source
        c = workers["tformer-int8"].run(one, 1, 1, tokens=True)["tokens"][0]
        results["int8_greedy_agreement_with_fp32"] = sum(x == y for x, y in zip(a, c)) / max(1, len(a))
    for name, (srcs, beam, batch, out_len) in scenarios.items():
        for w in workers.values():  # every output must be exactly out_len tokens
            lens = {len(t) for t in w.run(srcs[:batch], beam, batch, tokens=True, out_len=out_len)["tokens"]}
            assert lens <= {out_len, out_len - 1}, (name, lens)
        times = round_robin(workers, srcs, beam, batch, args.repeat, out_len=out_len)
        tokens = len(srcs) * out_len
        results[name] = {k: {"seconds": t, "tokens_per_s": tokens / t} for k, t in times.items()}
    for w in workers.values():
        w.close()
    # Ceilings: weight bytes per step against the read bandwidth, FLOPs per output token
    # against a large GEMM's rate (2 FLOPs per weight per decoder row; attention aside).
    weights = decoder_step_weights(model_dir)
    results["ceilings"] = {"step_weights": weights, **ceilings(args.threads)}
    if not args.skip_memory:
        results["d_peak_rss_mib"] = {k: peak_rss(model_dir, ct2_dir, k, args.threads) for k in workers}

    print(f"opus-mt-fr-en size, {args.threads} threads, isa {args.isa}; tformer greedy agrees with CT2 fp32 on "
          f"{agree:.0%} of tokens")
    if "int8_greedy_agreement_with_fp32" in results:
        print(f"tformer int8 greedy agrees with tformer fp32 on {results['int8_greedy_agreement_with_fp32']:.0%} of tokens")
    for name in scenarios:
        r = results[name]
        if name.startswith("e_"):  # one output token: the batch's time is the figure
            line = "  ".join(f"{k} {1e3 * v['seconds']:7.1f} ms" for k, v in r.items())
        else:
            line = "  ".join(f"{k} {v['tokens_per_s']:7.1f} tok/s" for k, v in r.items())
        base = r["tformer"]["seconds"]
        ratios = "  ".join(f"{k}/tformer {v['seconds'] / base:.2f}x" for k, v in r.items() if k != "tformer")
        print(f"{name:22s} {line}\n{'':22s} {ratios}")
    ceil = results["ceilings"]
    bw, peak = ceil["read_bandwidth"], ceil["gemm_flops"]
    print(f"ceilings: {weights / 1e6:.1f} M weights ({4 * weights / 1e6:.0f} MB) per decode step; read bandwidth "
          f"{bw / 1e9:.1f} GB/s ({args.threads} threads); large GEMM {peak / 1e9:.0f} GFLOP/s")
    for eng, width in (("tformer", 4), ("tformer-int8", 1)):  # bytes per weight
        if eng not in workers:
            continue
        for name, rows_per_token in (("a_latency_b1_greedy", 1), ("b_beam4_b16", 4), ("c_greedy_b32", 1)):
            tps = results[name][eng]["tokens_per_s"]
            steps = tps / rows_per_token if name.startswith("a") else None
            flops = tps * rows_per_token * 2 * weights
            line = f"  {name:22s} {eng:12s} {flops / 1e9:6.1f} GFLOP/s = {flops / peak:.0%} of the fp32 GEMM rate"
            if steps:
                line += (f"; weights read at {steps * width * weights / 1e9:.1f} GB/s = "
                         f"{steps * width * weights / bw:.0%} of bandwidth (ceiling {bw / (width * weights):.0f} tok/s)")
            print(line)
    if "d_peak_rss_mib" in results:
        print("d_peak_rss_mib        " + "  ".join(f"{k} {v:.0f}" for k, v in results["d_peak_rss_mib"].items()))
    if "tformer-int8" in workers and "ct2-int8" in workers:  # the targets: (a) <= 0.8, the rest <= 1.0
        ratios = {n: results[n]["tformer-int8"]["seconds"] / results[n]["ct2-int8"]["seconds"] for n in scenarios}
        if "d_peak_rss_mib" in results:
            rss = results["d_peak_rss_mib"]
            ratios["d_peak_rss"] = rss["tformer-int8"] / rss["ct2-int8"]
        results["int8_vs_ct2_int8"] = ratios
        print("tformer-int8 / ct2-int8 (time, memory): " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
