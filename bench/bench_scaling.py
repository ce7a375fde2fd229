"""Data-parallel scaling on CPU processes (gloo on loopback), and how much of the gradient
all-reduce hides behind the backward.

    python bench/bench_scaling.py [--steps 8] [--batch 16] [--config small]   # 1 vs 2 processes
    mpirun -np 2 --oversubscribe python bench/bench_scaling.py --collectives  # gloo vs MPI

Default mode launches the worker itself (1 process, then 2 processes, 1 compute thread each,
the way torchrun would: RANK/WORLD_SIZE/MASTER_*), each process with the same per-process
batch (weak scaling: the global batch grows with the processes). It prints per process:

  tokens/s per process and the scaling efficiency (2-process / 1-process tokens/s per process);
  CPU seconds per step (process_time: less sensitive to other load on the machine than wall);
  on 2 processes, per step (medians): the forward+backward alone (no collective), the
  all-reduce of all buckets alone, the overlapped forward+backward+all-reduce, the time
  still exposed after the backward returned, and the share of the all-reduce hidden:
  hidden = (fwd_bwd + allreduce - overlapped) / allreduce (1: fully hidden, 0: serial).

--collectives (under mpirun -np 2): all-reduce of the model's gradient size with
torch.distributed/gloo and with mpi4py (OpenMPI), blocking, and non-blocking while the
process computes (does the library progress without being polled?).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's stand-in compute: one core per process
import numpy as np  # noqa: E402

PRESETS = {
    "small": dict(d_model=256, layers=3, heads=4, ffn=1024, vocab=8000),   # tformer train --config small
    "base": dict(d_model=512, layers=6, heads=8, ffn=2048, vocab=32000),   # the paper's base model
    "tiny": dict(d_model=128, layers=2, heads=4, ffn=512, vocab=4000),
}


def make_model(name):
    import tformer

    p = PRESETS[name]
    cfg = tformer.TransformerConfig(src_vocab_size=p["vocab"], tgt_vocab_size=p["vocab"], d_model=p["d_model"],
                                    encoder_layers=p["layers"], decoder_layers=p["layers"],
                                    encoder_heads=p["heads"], decoder_heads=p["heads"], encoder_ffn_dim=p["ffn"],
                                    decoder_ffn_dim=p["ffn"], max_positions=256)
    return tformer.Transformer(cfg, seed=0)


def batch(rng, n, length, vocab):
    src = [list(rng.integers(3, vocab, size=length - 1)) + [2] for _ in range(n)]
    tgt = [list(rng.integers(3, vocab, size=length - 1)) for _ in range(n)]
    return src, tgt


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ------------------------------------------------------------------------------ worker


def worker(args):
    import tformer

    tformer.set_num_threads(args.threads)
    model = make_model(args.config)
    distributed = "WORLD_SIZE" in os.environ
    trainer = tformer.Trainer(model, lr=1e-4, dropout=0.1, distributed=distributed, bucket_mb=args.bucket_mb)
    rank, world = trainer.rank, trainer.world_size
    rng = np.random.default_rng(100 + rank)
    vocab = model.config.src_vocab_size
    steps = [batch(rng, args.batch, args.length, vocab) for _ in range(args.steps + 1)]
    tokens_per_step = sum(len(t) + 1 for t in steps[0][1]) + sum(len(s) for s in steps[0][0])
    trainer.step(*steps[0])  # warm-up: first-touch of every buffer
    wall, cpu = [], []
    for src, tgt in steps[1:]:
        w0, c0 = time.perf_counter(), time.process_time()
        trainer.step(src, tgt)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    out = {"rank": rank, "world": world, "wall": med(wall), "cpu": med(cpu), "tokens_per_step": tokens_per_step,
           "grad_mb": trainer._graph.flat_grad().nbytes / 2**20, "buckets": len(trainer._graph.buckets)}
    if distributed:
        out.update(overlap(trainer, steps[1:], args.repeat))
    print("RESULT " + json.dumps(out), flush=True)


def overlap(trainer, steps, repeat):
    """Times of the pieces of a step on this rank (see the module docstring)."""
    graph, reducer, group = trainer._graph, trainer._reducer, trainer.group

    def run(src, tgt, callback):
        s, sl, d, dl, lab = trainer._batch(src, tgt)
        graph.zero_grad()
        graph.run(s, sl, d, dl, lab, 0.1, 0.1, 0.0, 1, 1e-3, callback)

    fwd_bwd, allreduce, both, exposed = [], [], [], []
    for i in range(repeat):
        src, tgt = steps[i % len(steps)]
        group.barrier()
        t0 = time.perf_counter()
        run(src, tgt, None)
        fwd_bwd.append(time.perf_counter() - t0)
        group.barrier()
        t0 = time.perf_counter()
        reducer.reduce_all()
        allreduce.append(time.perf_counter() - t0)
        group.barrier()
        t0 = time.perf_counter()
        run(src, tgt, reducer.on_ready)
        reducer.finish()
        both.append(time.perf_counter() - t0)
        exposed.append(reducer.exposed_seconds)
    f, a, b = med(fwd_bwd), med(allreduce), med(both)
    e = med(exposed)
    last = graph.buckets[-1][1] / graph.flat_grad().size  # announced when the backward ends: never hidden
    return {"fwd_bwd": f, "allreduce": a, "overlapped": b, "exposed": e, "last_bucket_share": last,
            "hidden": max(0.0, min(1.0, (f + a - b) / a)) if a > 0 else float("nan"),
            "hidden_by_wait": max(0.0, min(1.0, 1.0 - e / a)) if a > 0 else float("nan")}


# ------------------------------------------------------------------------------ driver


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world, args):
    port = free_port()
    argv = [sys.executable, os.path.abspath(__file__), "--worker", "--config", args.config, "--steps",
            str(args.steps), "--batch", str(args.batch), "--length", str(args.length), "--threads", str(args.threads),
            "--repeat", str(args.repeat), "--bucket-mb", str(args.bucket_mb)]
    procs = []
    for rank in range(world):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        if world > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed:\n{err[-3000:]}")
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    return results


def driver(args):
    print(f"model {args.config} {PRESETS[args.config]}, {args.batch} sentences x {args.length} tokens per process "
          f"and step, {args.threads} thread(s) per process, load average {os.getloadavg()[0]:.1f}")
    one = launch(1, args)[0]
    two = launch(2, args)
    tps1 = one["tokens_per_step"] / one["wall"]
    tps2 = [r["tokens_per_step"] / r["wall"] for r in two]
    print(f"gradient buffer {one['grad_mb']:.1f} MiB in {two[0]['buckets']} buckets of <= ~{args.bucket_mb} MiB")
    print(f"1 process : {tps1:8.0f} tokens/s per process  (step {one['wall'] * 1e3:.0f} ms wall, "
          f"{one['cpu'] * 1e3:.0f} ms CPU)")
    for r, t in zip(two, tps2):
        print(f"2 processes, rank {r['rank']}: {t:8.0f} tokens/s per process  (step {r['wall'] * 1e3:.0f} ms wall, "
              f"{r['cpu'] * 1e3:.0f} ms CPU)")
    eff = statistics.mean(tps2) / tps1
    eff_cpu = one["cpu"] / statistics.mean(r["cpu"] for r in two)
    print(f"scaling efficiency 1 -> 2 processes (tokens/s per process): {eff:.2f} wall; {eff_cpu:.2f} by CPU "
          f"seconds per step (what it would be with a free core per process)")
    for r in two:
        print(f"rank {r['rank']}: fwd+bwd alone {r['fwd_bwd'] * 1e3:.0f} ms, all-reduce alone "
              f"{r['allreduce'] * 1e3:.0f} ms, overlapped {r['overlapped'] * 1e3:.0f} ms, still waiting after the "
              f"backward {r['exposed'] * 1e3:.0f} ms -> all-reduce hidden: {100 * r['hidden']:.0f}% by step time, "
              f"{100 * r['hidden_by_wait']:.0f}% by exposed wait (the last bucket, "
              f"{100 * r['last_bucket_share']:.0f}% of the bytes, cannot be hidden)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"one": one, "two": two, "efficiency": eff, "efficiency_cpu": eff_cpu}, f, indent=1)


# ------------------------------------------------------------------------------ gloo vs MPI


def collectives(args):
    """Under mpirun -np 2: the same all-reduce with gloo and with OpenMPI (mpi4py)."""
    from mpi4py import MPI

    import tformer

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(comm.bcast(free_port() if rank == 0 else None, root=0))
    tformer.set_num_threads(1)
    group = tformer.distributed.init()
    import torch
    import torch.distributed as dist

    model = make_model(args.config)
    trainer = tformer.Trainer(model, distributed=group, bucket_mb=args.bucket_mb)
    numel = trainer._graph.flat_grad().size
    buckets = trainer._graph.buckets
    a = np.ones(numel, dtype=np.float32)
    t = torch.from_numpy(a)
    m = np.random.default_rng(0).standard_normal((384, 384)).astype(np.float32)

    def compute(n=20):  # a stand-in for the backward: matrix products on this process's core
        x = m
        for _ in range(n):
            x = np.tanh(x @ m)

    def gloo_whole():
        dist.all_reduce(t)

    def mpi_whole():
        comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)

    def gloo_buckets_overlapped():
        works = [dist.all_reduce(t[o:o + n], async_op=True) for o, n in buckets]
        compute()
        for w in works:
            w.wait()

    def mpi_buckets_overlapped():
        reqs = [comm.Iallreduce(MPI.IN_PLACE, a[o:o + n], op=MPI.SUM) for o, n in buckets]
        compute()
        MPI.Request.Waitall(reqs)

    fns = {"compute": compute, "gloo_allreduce": gloo_whole, "mpi_allreduce": mpi_whole,
           "gloo_overlapped": gloo_buckets_overlapped, "mpi_overlapped": mpi_buckets_overlapped}
    times = {k: [] for k in fns}
    for _ in range(args.repeat):  # interleaved, so that load from elsewhere hits all alike
        for k, fn in fns.items():
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    r = {"numel": numel, "buckets": len(buckets), **{k: med(v) for k, v in times.items()}}
    for k in ("gloo", "mpi"):
        r[f"{k}_hidden"] = (r["compute"] + r[f"{k}_allreduce"] - r[f"{k}_overlapped"]) / r[f"{k}_allreduce"]
    if rank == 0:
        mb = numel * 4 / 2**20
        print(f"all-reduce of {mb:.1f} MiB ({len(buckets)} buckets) between 2 processes on loopback, medians of "
              f"{args.repeat}, load average {os.getloadavg()[0]:.1f}")
        for k in ("gloo", "mpi"):
            print(f"{k:4s}: blocking {r[f'{k}_allreduce'] * 1e3:7.1f} ms ({mb / r[f'{k}_allreduce'] / 1024:.2f} GiB/s "
                  f"algorithm bandwidth); with {r['compute'] * 1e3:.0f} ms of compute: {r[f'{k}_overlapped'] * 1e3:.1f}"
                  f" ms -> {100 * r[f'{k}_hidden']:.0f}% hidden")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(r, f, indent=1)
    group.close()


# ------------------------------------------------------------------------------ cluster model

PAPER = {  # "Attention Is All You Need", EN-DE: shared BPE vocabulary of ~37000 tokens
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_heads=8, decoder_heads=8,
                 encoder_ffn_dim=2048, decoder_ffn_dim=2048),
    "big": dict(d_model=1024, encoder_layers=6, decoder_layers=6, encoder_heads=16, decoder_heads=16,
                encoder_ffn_dim=4096, decoder_ffn_dim=4096),
}


def step_model(name, gpus_per_node, nodes, tokens_per_gpu, tflops, bw_intra, bw_inter, nics, length=25,
               grad_bytes=4, overlap=None):
    """Expected time of one data-parallel step (see docs/SCALING.md): compute from FLOPs,
    ring all-reduce from bytes and the slowest link, and the part of it not hidden."""
    import tformer
    from tformer.train import _frozen

    cfg = tformer.TransformerConfig(src_vocab_size=37000, tgt_vocab_size=37000, **PAPER[name])
    frozen = set(_frozen(cfg))
    shapes = {n: s for n, s in cfg.to_core().parameter_shapes() if n not in frozen}
    count = {n: int(np.prod(s)) for n, s in shapes.items()}
    params = sum(count.values())
    enc = sum(v for n, v in count.items() if n.startswith("encoder.layers."))
    dec = sum(v for n, v in count.items() if n.startswith("decoder.layers."))
    d, v = cfg.d_model, cfg.tgt_vocab_size
    # forward FLOPs per token: 2 per weight of the matrices it passes through, plus attention
    # (QK^T and AV: 2 x 2 x length x d per layer and attention kind)
    att = 4 * length * d
    f_src = 2 * enc + cfg.encoder_layers * att
    f_tgt = 2 * dec + 2 * v * d + cfg.decoder_layers * 2 * att
    flops = 3 * (tokens_per_gpu / 2) * (f_src + f_tgt)  # training = forward + 2x for the backward
    t_compute = flops / (tflops * 1e12)
    n = gpus_per_node * nodes
    size = params * grad_bytes
    ring = 2 * (n - 1) / n * size
    # Ring all-reduce: every link of a ring carries 2(n-1)/n of the bytes. Within a node the
    # rings run at the NVLink/PCIe bus bandwidth; across nodes NCCL runs one ring per NIC,
    # each with its share of the bytes, so the NICs of a node together bound the rate.
    bw = bw_intra if nodes == 1 else min(bw_intra, bw_inter * nics)
    t_ar = ring / (bw * 1e9)
    # The shared embedding matrix is final only when the backward ends (its bucket cannot
    # overlap); the rest can hide behind the remaining backward (2/3 of the compute).
    late = count.get("src_embed", 0) / params
    overlap = 1.0 - late if overlap is None else overlap
    exposed = t_ar * (1 - overlap) + max(0.0, t_ar * overlap - 2 * t_compute / 3)
    return {"model": name, "params_M": params / 1e6, "grad_MB": size / 1e6, "gpus": n, "overlap": overlap,
            "tflop_per_step_per_gpu": flops / 1e12, "t_compute_ms": 1e3 * t_compute, "t_allreduce_ms": 1e3 * t_ar,
            "t_exposed_ms": 1e3 * exposed, "efficiency": t_compute / (t_compute + exposed)}


def cluster(args):
    print(f"{args.tokens_per_gpu} tokens per GPU and step, {args.tflops} TFLOP/s sustained per GPU, "
          f"{args.bw_intra} GB/s within a node, {args.nics} x {args.bw_inter} GB/s between nodes, "
          f"{args.grad_bytes}-byte gradients")
    print(f"{'model':5s} {'params':>8s} {'grad MB':>8s} {'GPUs':>5s} {'TFLOP':>6s} {'compute':>8s} "
          f"{'allreduce':>9s} {'overlap':>7s} {'exposed':>8s} {'efficiency':>10s}")
    for name in ("base", "big"):
        for nodes in args.nodes:
            r = step_model(name, args.gpus_per_node, nodes, args.tokens_per_gpu, args.tflops, args.bw_intra,
                           args.bw_inter, args.nics, grad_bytes=args.grad_bytes, overlap=args.overlap)
            print(f"{name:5s} {r['params_M']:7.1f}M {r['grad_MB']:8.0f} {r['gpus']:5d} "
                  f"{r['tflop_per_step_per_gpu']:6.2f} {r['t_compute_ms']:6.0f}ms {r['t_allreduce_ms']:7.1f}ms "
                  f"{100 * r['overlap']:6.0f}% {r['t_exposed_ms']:6.1f}ms {r['efficiency']:10.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(PRESETS), default="small")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per run")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of each overlap measurement")
    ap.add_argument("--batch", type=int, default=16, help="sentences per process and step")
    ap.add_argument("--length", type=int, default=24, help="tokens per sentence")
    ap.add_argument("--threads", type=int, default=1, help="compute threads per process")
    ap.add_argument("--bucket-mb", type=float, default=4.0)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cluster", action="store_true", help="print the scaling model of docs/SCALING.md")
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--tokens-per-gpu", type=int, default=6250, help="source + target tokens (paper: ~50k / 8)")
    ap.add_argument("--tflops", type=float, default=40.0, help="sustained TFLOP/s per GPU in training")
    ap.add_argument("--bw-intra", type=float, default=130.0, help="all-reduce bus bandwidth in a node, GB/s")
    ap.add_argument("--bw-inter", type=float, default=12.5, help="bandwidth of one NIC, GB/s (100 Gb/s = 12.5)")
    ap.add_argument("--nics", type=int, default=4, help="NICs per node")
    ap.add_argument("--grad-bytes", type=int, default=4, help="4: fp32 gradients, 2: fp16/bf16")
    ap.add_argument("--overlap", type=float, default=None, help="share of the gradient bytes final before the "
                    "backward ends (default: all but the shared embedding)")
    ap.add_argument("--collectives", action="store_true", help="gloo vs MPI (run under mpirun -np 2)")
    args = ap.parse_args()
    if args.worker:
        worker(args)
    elif args.collectives:
        collectives(args)
    elif args.cluster:
        cluster(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
