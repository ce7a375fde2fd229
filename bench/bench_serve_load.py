"""Open-loop load test of serving (issue 16's measurement): requests arrive by a seeded
Poisson process whatever the server's state (a closed loop would slow its clients down
with the server and hide queueing), 80 % short (1 sentence, 16 generated tokens, greedy)
and 20 % long (8 sentences, 128 generated tokens, beam 4), output lengths forced
(min_length = max_length) so that every system does the same work. Model: an
opus-mt-sized Marian (d 512, 6 + 6 layers, FFN 2048) with random weights and the test
suite's small French-English tokenizer.

For each system: the saturation throughput (a burst of --burst requests of the mix sent
at once: requests / seconds to finish them all), an idle short request's latency (median
of 15, one at a time), then --seconds of arrivals at each --loads fraction of saturation (or
of --rate requests/s: then every system gets the same seeded arrivals).
Latency runs from a request's scheduled arrival to its answer. Reported per class: p50 /
p99 latency, and sentences/s over the run; short p99 / idle short latency is issue 16's
head-of-line figure (target <= 4 at 80 % load).

Systems (each server in its own process, one at a time):
  engineN  the same with --large-request-every N (small requests first: while a one-sentence
           request runs, larger requests join every N-th step only; engine32 = serve's default)
  engine   tformer serve --scheduler engine --large-request-every 1: in-flight batching, every
           step carries every row (--max-rows, --max-batch-tokens, --kv-cache-mb, --block-size
           passed through)
  request  tformer serve --scheduler request: the request-level batcher (--batch-wait-ms 5)
  ct2      CTranslate2 behind the same FastAPI front end (bench/ct2_serve_app.py: one
           translate_batch per request on a thread pool of --ct2-inter-threads workers)

    python bench/bench_serve_load.py [--systems engine,request,ct2] [--loads 0.5,0.8] [--rate R] [--seconds 60]
        [--threads 2] [--seed 0] [--json out.json] [--max-rows 256] [--max-batch-tokens 8192]
        [--kv-cache-mb MB] [--block-size 16]
    a quick check that it runs: --systems engine --loads 0.5 --seconds 2 --burst 2 --layers 1 --width 64
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_serve  # noqa: E402

SHORT = {"beam_size": 1, "max_length": 16, "min_length": 16}
LONG = {"beam_size": 4, "max_length": 128, "min_length": 128}
LONG_TEXTS = 8
P_SHORT = 0.8


def make_request(rng):
    """(kind, body) of one request of the mix."""
    if rng.random() < P_SHORT:
        return "short", {"texts": [rng.choice(bench_serve.SENTENCES)], **SHORT}
    return "long", {"texts": [rng.choice(bench_serve.SENTENCES) for _ in range(LONG_TEXTS)], **LONG}


def send(port, body):
    """Seconds to answer one request on a connection of its own; raises on an error status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/translate", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"status {reply.status}: {data[:300]!r}")
        return time.perf_counter() - t0
    finally:
        conn.close()


def fire(port, schedule):
    """Sends each (arrival second, kind, body) of `schedule` at its time, each from a thread
    of its own; returns [(kind, latency from the scheduled arrival, texts)] and the seconds
    from the first arrival to the last answer."""
    results, lock = [], threading.Lock()
    start = time.perf_counter() + 0.2

    def one(at, kind, body):
        delay = start + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(port, body)
        latency = time.perf_counter() - (start + at)
        with lock:
            results.append((kind, latency, len(body["texts"])))

    threads = [threading.Thread(target=one, args=item, daemon=True) for item in schedule]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def poisson_schedule(rate, seconds, seed):
    rng = random.Random(seed)
    schedule, t = [], rng.expovariate(rate)
    while t < seconds:
        schedule.append((t, *make_request(rng)))
        t += rng.expovariate(rate)
    return schedule


def percentile(values, q):
    return bench_serve.percentile(values, q) if values else float("nan")


def measure(port, args):
    rng = random.Random(args.seed + 1)
    send(port, make_request(rng)[1])  # warm-up
    idle = statistics.median(send(port, {"texts": [s], **SHORT}) for s in bench_serve.SENTENCES[:5] * 3)
    burst = [(0.0, *make_request(rng)) for _ in range(args.burst)]
    _, seconds = fire(port, burst)
    saturation = args.burst / seconds
    out = {"idle_short_ms": 1e3 * idle, "saturation_requests_per_s": saturation, "loads": {}}
    print(f"  idle short request {1e3 * idle:.0f} ms; saturation {saturation:.2f} requests/s "
          f"({args.burst} at once in {seconds:.1f} s)", flush=True)
    for load in args.loads:
        # --rate: every system gets the same arrivals (fractions of one rate, not of its own saturation)
        schedule = poisson_schedule(load * (args.rate or saturation), args.seconds, args.seed)
        results, wall = fire(port, schedule)
        row = {"requests": len(results), "sentences_per_s": sum(r[2] for r in results) / wall}
        for kind in ("short", "long"):
            lat = [r[1] for r in results if r[0] == kind]
            row[kind] = {"n": len(lat), "p50_ms": 1e3 * percentile(lat, 50), "p99_ms": 1e3 * percentile(lat, 99)}
        row["short_p99_over_idle"] = row["short"]["p99_ms"] / out["idle_short_ms"]
        out["loads"][load] = row
        print(f"  load {load:.0%}: {len(results)} requests, {row['sentences_per_s']:.1f} sentences/s; "
              f"short p50 {row['short']['p50_ms']:.0f} / p99 {row['short']['p99_ms']:.0f} ms "
              f"({row['short_p99_over_idle']:.1f}x idle); long p50 {row['long']['p50_ms']:.0f} / "
              f"p99 {row['long']['p99_ms']:.0f} ms", flush=True)
    return out


def start(system, model_dir, args):
    port = bench_serve.free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    # engineN: the engine with --large-request-every N (small requests first).
    every = system[len("engine"):] if system.startswith("engine") else ""
    if system == "request" or (system.startswith("engine") and (every == "" or every.isdigit())):
        scheduler = "request" if system == "request" else "engine"
        cmd = [sys.executable, "-m", "tformer.cli", "serve", model_dir, "--host", "127.0.0.1", "--port", str(port),
               "--threads", str(args.threads), "--log-level", "warning", "--max-pending-texts", "100000",
               "--max-length", "256", "--scheduler", scheduler]
        if scheduler == "engine":
            cmd += ["--max-rows", str(args.max_rows), "--max-batch-tokens", str(args.max_batch_tokens),
                    "--block-size", str(args.block_size), "--large-request-every", every or "1"]
            if args.kv_cache_mb is not None:
                cmd += ["--kv-cache-mb", str(args.kv_cache_mb)]
    elif system == "ct2":
        ct2_dir = model_dir + "-ct2"
        if not os.path.exists(os.path.join(ct2_dir, "model.bin")):
            from ctranslate2.converters import TransformersConverter

            TransformersConverter(model_dir).convert(ct2_dir, force=True)
        cmd = [sys.executable, os.path.join(bench_serve.HERE, "ct2_serve_app.py"), ct2_dir, model_dir,
               "--port", str(port), "--inter-threads", str(args.ct2_inter_threads),
               "--intra-threads", str(max(1, args.threads // args.ct2_inter_threads))]
    else:
        raise ValueError(f"unknown system {system!r}")
    return bench_serve.Server.command(cmd, port, env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="engine,request,ct2")
    ap.add_argument("--loads", default="0.5,0.8", help="fractions of the saturation throughput")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of arrivals per load")
    ap.add_argument("--burst", type=int, default=20, help="requests of the saturation probe")
    ap.add_argument("--rate", type=float, default=None,
                    help="requests/s that --loads are fractions of, the same for every system (default: each "
                         "system's own saturation)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ct2-inter-threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rows", type=int, default=256, help="engine: decoder rows per step")
    ap.add_argument("--max-batch-tokens", type=int, default=8192, help="engine: source tokens encoded per step")
    ap.add_argument("--kv-cache-mb", type=float, default=None, help="engine: K/V pool (default: automatic)")
    ap.add_argument("--block-size", type=int, default=16, help="engine: positions per K/V block")
    ap.add_argument("--width", type=int, default=512, help="model width (512: opus-mt size)")
    ap.add_argument("--layers", type=int, default=6, help="encoder and decoder layers (6: opus-mt size)")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.loads = [float(x) for x in args.loads.split(",")]
    model_dir = bench_serve.build_model(
        os.path.join(tempfile.gettempdir(), f"tformer-bench-serve-{args.width}x{args.layers}"), args.width, args.layers)
    results = {"model_dir": model_dir, "threads": args.threads, "rate": args.rate, "systems": {}}
    for system in args.systems.split(","):
        print(f"{system}:", flush=True)
        server = start(system, model_dir, args)
        try:
            results["systems"][system] = measure(server.port, args)
        finally:
            server.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
