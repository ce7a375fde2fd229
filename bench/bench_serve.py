"""Load test of `tformer serve`: latency and throughput at 1, 8 and 32 concurrent clients,
with dynamic batching (--batch-wait-ms, default 5) and without (--batch-wait-ms 0).

The server runs in a subprocess on 127.0.0.1 (a free port) and is stopped by this script;
every client is a thread with a keep-alive connection sending one sentence per request.
Each run is bounded in requests (--requests) and in time (--seconds). Traffic stays on
the loopback interface.

    python bench/bench_serve.py MODEL_DIR [--requests 200] [--seconds 60] [--max-length 32]
    python bench/bench_serve.py            # builds a small random Marian model + tokenizer first

Prints, per run: p50 / p99 latency, sentences/s, and the mean sentences per generate call
(from GET /stats); then the throughput ratio batched / unbatched per client count.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SENTENCES = [
    "Le chat dort sur le canapé.", "Où est la gare, s'il vous plaît ?", "Nous allons à l'école demain matin.",
    "J'aime beaucoup le café noir.", "Elle lit un livre très intéressant.", "Il fait beau aujourd'hui !",
    "Les enfants jouent dans le jardin.", "Ça coûte vingt-cinq euros.", "Je ne comprends pas ta question.",
    "Mon frère habite à Paris depuis 2019.", "Le train part à huit heures.", "Quelle heure est-il ?",
]


def build_model(path, d_model, layers):
    """A random Marian checkpoint of the given size with the test suite's small
    French-English tokenizer (tests/test_translator.py), built once."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return path
    import pathlib

    import torch
    from transformers import MarianConfig, MarianMTModel

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import test_translator as tt

    root = pathlib.Path(path)
    tok = tt.build_marian_tokenizer(root.parent / (root.name + "_tokenizer"))
    vocab = json.load(open(tok / "vocab.json"))
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(vocab), d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                       encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=4 * d_model,
                       decoder_ffn_dim=4 * d_model, max_position_embeddings=512, activation_function="swish",
                       pad_token_id=vocab["<pad>"], eos_token_id=0, decoder_start_token_id=vocab["<pad>"],
                       forced_eos_token_id=0)
    MarianMTModel(cfg).eval().save_pretrained(path)
    for name in os.listdir(tok):
        with open(tok / name, "rb") as src, open(os.path.join(path, name), "wb") as dst:
            dst.write(src.read())
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir, batch_wait_ms, args):
        self.port = free_port()
        cmd = [sys.executable, "-m", "tformer.cli", "serve", model_dir, "--host", "127.0.0.1",
               "--port", str(self.port), "--batch-wait-ms", str(batch_wait_ms), "--max-batch-size",
               str(args.max_batch_size), "--log-level", "warning", "--max-pending-texts", "100000"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.device != "cpu":
            cmd += ["--device", args.device]
        env = dict(os.environ)
        if args.omp_wait_policy:
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        self._start(cmd, env)

    @classmethod
    def command(cls, cmd, port, env=None):
        """Any HTTP server with the same /health and /translate (bench_serve_load.py's
        CTranslate2 front end), started by `cmd` on `port`."""
        server = cls.__new__(cls)
        server.port = port
        server._start(cmd, dict(os.environ) if env is None else env)
        return server

    def _start(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.time() + 120
        while True:
            try:
                status, _ = self.request("GET", "/health")
                if status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("server did not answer /health within 120 s")
            time.sleep(0.2)

    def request(self, method, path, body=None, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            return reply.status, json.loads(reply.read() or b"null")
        finally:
            if own:
                conn.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def load(server, clients, n_requests, seconds, options):
    """`clients` threads share a budget of n_requests requests and a deadline."""
    lock = threading.Lock()
    budget = [n_requests]
    latencies, errors = [], []
    deadline = time.perf_counter() + seconds

    def client(seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    if budget[0] == 0:
                        return
                    budget[0] -= 1
                body = {"texts": [rng.choice(SENTENCES)], **options}
                t0 = time.perf_counter()
                status, reply = server.request("POST", "/translate", body, conn=conn)
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if status == 200 else errors).append(dt if status == 200 else (status, reply))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", nargs="?", help="Hugging Face model directory (default: build a random one)")
    ap.add_argument("--clients", default="1,8,32", help="concurrent clients per run (default 1,8,32)")
    ap.add_argument("--batch-wait-ms", type=float, default=5.0, help="the batched runs' wait (default 5)")
    ap.add_argument("--max-batch-size", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200, help="requests per run (default 200)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time limit per run (default 60)")
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=32, help="generated tokens per sentence (default 32)")
    ap.add_argument("--threads", type=int, default=0, help="tformer CPU threads in the server")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--omp-wait-policy", choices=["active", "passive"],
                    help="OMP_WAIT_POLICY of the server (default: inherited); passive stops idle OpenMP threads "
                         "spinning, which matters when cores are shared")
    ap.add_argument("--d-model", type=int, default=256, help="size of the built model (default 256)")
    ap.add_argument("--layers", type=int, default=3, help="layers of the built model (default 3+3)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    model_dir = args.model_dir or build_model(
        os.path.join(tempfile.gettempdir(), f"tformer-bench-serve-{args.d_model}x{args.layers}"),
        args.d_model, args.layers)
    options = {"beam_size": args.beam_size, "max_length": args.max_length}
    clients = [int(c) for c in args.clients.split(",")]
    print(f"model {model_dir}, {options}, max_batch_size {args.max_batch_size}, "
          f"{args.requests} requests or {args.seconds:.0f} s per run, device {args.device}, "
          f"OMP_WAIT_POLICY {args.omp_wait_policy or os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"{'batching':>12} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'sent/s':>8} "
          f"{'sent/call':>9} {'errors':>6}")
    rows = []
    for wait in (args.batch_wait_ms, 0.0):
        server = Server(model_dir, wait, args)
        try:
            load(server, 2, 4, 30, options)  # warm-up
            for n in clients:
                before = server.request("GET", "/stats")[1]
                lat, errors, wall = load(server, n, args.requests, args.seconds, options)
                after = server.request("GET", "/stats")[1]
                calls = after["batches"] - before["batches"]
                texts = after["texts"] - before["texts"]
                row = dict(batch_wait_ms=wait, clients=n, requests=len(lat), errors=len(errors),
                           p50_ms=1000 * percentile(lat, 50) if lat else None,
                           p99_ms=1000 * percentile(lat, 99) if lat else None,
                           sentences_per_s=len(lat) / wall, sentences_per_call=texts / calls if calls else 0.0)
                rows.append(row)
                label = f"{wait:g} ms" if wait else "off"
                print(f"{label:>12} {n:>7} {row['requests']:>8} {row['p50_ms'] or 0:>8.1f} {row['p99_ms'] or 0:>8.1f} "
                      f"{row['sentences_per_s']:>8.1f} {row['sentences_per_call']:>9.2f} {len(errors):>6}")
                if errors:
                    print(f"             first error: {errors[0]}")
        finally:
            server.stop()
    print()
    for n in clients:
        on = next(r for r in rows if r["clients"] == n and r["batch_wait_ms"])
        off = next(r for r in rows if r["clients"] == n and not r["batch_wait_ms"])
        if off["sentences_per_s"]:
            print(f"clients {n:>3}: throughput batched / unbatched {on['sentences_per_s'] / off['sentences_per_s']:.2f}x, "
                  f"p50 latency {on['p50_ms'] / off['p50_ms']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model_dir": model_dir, "options": options, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
