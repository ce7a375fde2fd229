"""Shared helpers of the benchmarks: thread pinning, timing, the opus-mt-sized model."""
from __future__ import annotations

import json
import os
import statistics
import time

OPUS_MT_FR_EN = dict(
    vocab_size=59514, d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
    decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512,
    activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
    pad_token_id=59513, eos_token_id=0, decoder_start_token_id=59513, forced_eos_token_id=0,
)

# flan-t5-small's shape (T5 v1.1: gated-GELU FFN, untied head, 6 heads x 64 != d_model).
FLAN_T5_SMALL = dict(
    vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)


def set_threads(n: int):
    """Same thread count for every engine: env for pools not yet started, then the APIs."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch
    import tformer

    torch.set_num_threads(n)
    tformer.set_num_threads(n)


def make_marian_dir(path: str, seed: int = 0, **overrides) -> str:
    """A random-weight MarianMT checkpoint (opus-mt-fr-en's shape) saved as safetensors."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return path
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    cfg = MarianConfig(**{**OPUS_MT_FR_EN, **overrides})
    MarianMTModel(cfg).save_pretrained(path)
    return path


def make_t5_dir(path: str, seed: int = 0, **overrides) -> str:
    """A random-weight T5 checkpoint (flan-t5-small's shape) saved as safetensors."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return path
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    T5ForConditionalGeneration(T5Config(**{**FLAN_T5_SMALL, **overrides})).save_pretrained(path)
    return path


def median_time(fn, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, repeat: int, warmup: int = 1) -> dict:
    """Median seconds per engine, running the engines round-robin so that machine
    noise hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def gemm_rate(n_threads: int, m=1024, k=1024, n=1024, repeat=20) -> float:
    """This machine's fp32 GEMM rate (GFLOP/s) through tformer's BLAS (one call, host memory)."""
    import numpy as np
    import tformer

    a = np.random.rand(m, k).astype(np.float32)
    b = np.random.rand(k, n).astype(np.float32)
    t = median_time(lambda: tformer.ops.gemm(a, b), repeat, warmup=3)
    return 2.0 * m * n * k / t / 1e9


def forward_flops(batch, src_len, tgt_len, d, ffn, layers_e, layers_d, vocab, attn=None, ffn_mats=2) -> dict:
    """Multiply-adds x 2 of one forward (projections, attention scores and sums, logits).
    attn: the attention's inner width (heads x head_dim; default d); ffn_mats: 3 for a gated FFN."""
    a = attn or d
    ns, nt = batch * src_len, batch * tgt_len
    enc = layers_e * (2 * ns * d * (4 * a + ffn_mats * ffn) + 4 * batch * src_len * src_len * a)
    dec_self = 2 * nt * d * 4 * a + 4 * batch * tgt_len * tgt_len * a
    dec_cross = 2 * nt * d * 2 * a + 2 * ns * d * 2 * a + 4 * batch * tgt_len * src_len * a
    dec = layers_d * (dec_self + dec_cross + 2 * nt * d * ffn_mats * ffn)
    logits = 2 * nt * d * vocab
    return {"encoder": enc, "decoder": dec, "logits": logits, "total": enc + dec + logits}


def gemm_sweep(workers: dict, shapes, rows, repeat: int, reps_of, time_of=lambda reply: reply) -> list:
    """Times GEMM worker processes against each other (bench_gemm.py, bench_int8_gemm.py).

    workers: name -> a Popen whose stdin takes lines "m k n reps" and whose stdout answers each
    with one JSON value; time_of(value) is its seconds per call. For every (k, n) of `shapes` and
    m of `rows`, `repeat` rounds run each worker once in turn (interleaved: other load on shared
    cores hits every engine alike) and the minimum is kept. reps_of(flops) is the calls per timed
    burst. Prints one line per shape, closes the workers, returns [{m, k, n, name: seconds}]."""
    names = list(workers)
    print(f"{'m':>5} {'k':>5} {'n':>6}  " + "  ".join(f"{n:>19}" for n in names))
    results = []
    for k, n in shapes:
        for m in rows:
            flops = 2.0 * m * n * k
            reps = reps_of(flops)
            best = {name: float("inf") for name in names}
            for _ in range(repeat):
                for name, w in workers.items():
                    w.stdin.write(f"{m} {k} {n} {reps}\n")
                    w.stdin.flush()
                    best[name] = min(best[name], time_of(json.loads(w.stdout.readline())))
            cells = "  ".join(f"{best[x] * 1e3:8.3f} ms {flops / best[x] / 1e9:6.0f} GF" for x in names)
            print(f"{m:5d} {k:5d} {n:6d}  {cells}", flush=True)
            results.append({"m": m, "k": k, "n": n, **best})
    for w in workers.values():
        w.stdin.close()
        w.wait()
    return results
