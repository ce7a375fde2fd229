"""Attention forward and backward on the GPU: tformer's kernels against PyTorch's
scaled_dot_product_attention forced to its flash backend (torch.nn.attention.sdpa_kernel),
on the same inputs (issue 6, part (a)).

Shapes as FlashAttention's benchmarks: 16k tokens (batch x seq = 16384), model width 2048
(heads = 2048 / head_dim), seq 128 ... 4096, head_dim 64 and 128, causal and not, bfloat16
then float16. q, k, v, dout are (batch, seq, heads, head_dim) = tformer's (batch, seq, width)
layout, which torch reads through a transposed view, as flash attention does. FLOPs as
FlashAttention counts them: forward 4 * batch * heads * seq^2 * head_dim (halved when causal),
backward 2.5 x forward. Each time is the median of repeats of n back-to-back calls between two
device synchronisations, after a warm-up call, tformer and torch taking turns; tformer's calls
run in C++ on tensors uploaded once (tformer._core.bench.AttentionTimer), torch's on CUDA
tensors. Each shape also compares tformer's out and dq with torch's for the first sequence.
Target: ratio (tformer TFLOP/s / torch TFLOP/s) >= 1.0 forward and backward at seq >= 512.

    python bench/gpu/bench_attention.py [--dtypes bfloat16,float16] [--seqs 128,...,4096]
        [--head-dims 64,128] [--json out.json] [--budget-s 80]
    python bench/gpu/bench_attention.py --device cpu --smoke      # tests the script (float32)
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_common as g  # noqa: E402

TARGET_RATIO, TARGET_MIN_SEQ = 1.0, 512
# Relative error (norm) between the two engines' results, both rounded to the dtype:
# twice the per-engine tolerance of the issue (1e-2 bf16, 3e-3 fp16 against float64).
CHECK_TOL = {"bfloat16": 2e-2, "float16": 6e-3, "float32": 1e-4}


def flops(batch, heads, seq, head_dim, causal):
    f = 4.0 * batch * heads * seq * seq * head_dim
    return f / 2 if causal else f


def parse_list(text, cast):
    return [cast(x) for x in text.split(",") if x.strip()]


def main():
    ap = g.parser(__doc__)
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--seqs", default="128,256,512,1024,2048,4096")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--causal", default="0,1", help="0, 1 or 0,1")
    ap.add_argument("--tokens", type=int, default=16384, help="batch x seq of every shape")
    ap.add_argument("--width", type=int, default=2048, help="heads x head_dim of every shape")
    ap.add_argument("--no-backward", action="store_true")
    args = ap.parse_args()
    g.check_args(args, ap)
    dtypes, seqs = parse_list(args.dtypes, str), parse_list(args.seqs, int)
    head_dims, causals = parse_list(args.head_dims, int), [bool(int(c)) for c in parse_list(args.causal, str)]
    tokens, width = args.tokens, args.width
    if args.smoke:
        seqs, head_dims, tokens, width = [32, 64], [16, 32], 128, 64
    notes = []
    if args.device == "cpu":
        if dtypes != ["float32"]:
            notes.append("cpu: tformer has float32 only there, so every case runs float32")
        dtypes = ["float32"]
    for s in seqs:
        if s < 1 or tokens % s:
            ap.error(f"--tokens {tokens} is not a multiple of seq {s}")
    for d in head_dims:
        if width % d:
            ap.error(f"--width {width} is not a multiple of head_dim {d}")
    repeats = args.repeats or (3 if args.smoke else 5)
    min_repeat_s = 0.001 if args.smoke else 0.02  # n calls per repeat: at least this long

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from tformer._native import _core

    g.require_device(args.device)
    info = g.machine(args.device)
    sync = g.synchronizer(args.device)
    budget = g.Budget(args.budget_s)
    dev = torch.device(args.device)

    # One set of random inputs for every shape: (tokens, width) reshaped to (batch, seq, width).
    rng = np.random.default_rng(0)
    host = {n: rng.standard_normal((tokens, width), dtype=np.float32) for n in ("q", "k", "v", "dout")}

    results, skipped = [], []
    cases = [(dt, d, c, s) for dt in dtypes for d in head_dims for c in causals for s in seqs]
    for dt, d, causal, s in cases:
        case = {"dtype": dt, "seq": s, "head_dim": d, "causal": causal}
        if budget.exhausted():
            skipped.append(case)
            continue
        batch, heads = tokens // s, width // d
        arrays = {n: a.reshape(batch, s, width) for n, a in host.items()}
        backward = not args.no_backward
        timer = _core.bench.AttentionTimer(arrays["q"], arrays["k"], arrays["v"], arrays["dout"] if backward else None,
                                           heads, causal, args.device, dt)
        tdt = getattr(torch, dt)
        tq, tk, tv = (torch.from_numpy(arrays[n]).to(dev, tdt).view(batch, s, heads, d).transpose(1, 2).requires_grad_()
                      for n in ("q", "k", "v"))
        tdout = torch.from_numpy(arrays["dout"]).to(dev, tdt).view(batch, s, heads, d).transpose(1, 2)
        state = {}

        def torch_forward():  # inside sdpa_kernel(FLASH_ATTENTION), below
            with torch.no_grad():
                state["out"] = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            graph_out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

        def torch_backward():
            state["grads"] = torch.autograd.grad(graph_out, (tq, tk, tv), tdout, retain_graph=True)

        f_fwd = flops(batch, heads, s, d, causal)
        row = dict(case, batch=batch, heads=heads, fwd_gflop=f_fwd / 1e9)
        passes = [("fwd", timer.forward, torch_forward, f_fwd)]
        if backward:
            passes.append(("bwd", timer.backward, torch_backward, 2.5 * f_fwd))
        for name, ours, theirs, fl in passes:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # an error, not a fallback, if flash cannot run
                t = g.per_call({"tformer": ours, "torch": g.loop_runner(theirs, sync)}, repeats, min_repeat_s)
            row[name] = {
                "tformer_ms": t["tformer"]["s"] * 1e3, "torch_ms": t["torch"]["s"] * 1e3,
                "tformer_tflops": fl / t["tformer"]["s"] / 1e12, "torch_tflops": fl / t["torch"]["s"] / 1e12,
                "ratio": t["torch"]["s"] / t["tformer"]["s"],
                "iters": {k: v["iters"] for k, v in t.items()},
            }
        # Same function: tformer's results for the first sequence against torch's.
        mine = timer.outputs(1)
        theirs_out = state["out"][:1].transpose(1, 2).reshape(1, s, width).float().cpu().numpy()
        row["check"] = {"out_rel_err": g.rel_err(mine["out"], theirs_out)}
        if backward:
            theirs_dq = state["grads"][0][:1].transpose(1, 2).reshape(1, s, width).float().cpu().numpy()
            row["check"]["dq_rel_err"] = g.rel_err(mine["dq"], theirs_dq)
        row["check"]["ok"] = all(v <= CHECK_TOL[dt] for k, v in row["check"].items() if k.endswith("rel_err"))
        results.append(row)
        del timer, tq, tk, tv, tdout, graph_out, state
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    summary = {}
    for name in ("fwd", "bwd"):
        ratios = [r[name]["ratio"] for r in results if name in r and r["seq"] >= TARGET_MIN_SEQ]
        worst = min(ratios) if ratios else None
        summary[name] = {"min_ratio_seq_ge_512": worst, "target": TARGET_RATIO,
                         "verdict": g.verdict(worst, TARGET_RATIO) if ratios else "n/a"}
    out = {"benchmark": "attention", "machine": info, "tokens": tokens, "width": width, "repeats": repeats,
           "smoke": args.smoke, "notes": notes, "flop_count": "fwd 4*b*h*s^2*d (/2 causal), bwd 2.5x fwd",
           "targets": {"ratio_min": TARGET_RATIO, "from_seq": TARGET_MIN_SEQ}, "results": results,
           "skipped_for_budget": skipped, "summary": summary, "elapsed_s": budget.elapsed()}
    g.write_json(args.json, out)

    print(f"attention: tformer vs torch SDPA (flash backend), {tokens} tokens, width {width}, "
          f"{info.get('gpu') or info['device']}, torch {info['torch']}; TFLOP/s, ratio = tformer/torch speed")
    for n in notes:
        print(f"  note: {n}")
    print(f"{'dtype':9s} {'seq':>5s} {'d':>4s} {'causal':>6s} | {'fwd tformer':>11s} {'torch':>7s} {'ratio':>6s} | "
          f"{'bwd tformer':>11s} {'torch':>7s} {'ratio':>6s} | check (rel err out / dq)")
    for r in results:
        line = f"{r['dtype']:9s} {r['seq']:5d} {r['head_dim']:4d} {str(r['causal']):>6s} |"
        for name in ("fwd", "bwd"):
            if name in r:
                x = r[name]
                line += f" {x['tformer_tflops']:11.2f} {x['torch_tflops']:7.2f} {x['ratio']:5.2f}x |"
            else:
                line += f" {'-':>11s} {'-':>7s} {'-':>6s} |"
        c = r["check"]
        line += f" {'ok' if c['ok'] else 'MISMATCH'} {c['out_rel_err']:.1e} / {c.get('dq_rel_err', float('nan')):.1e}"
        print(line)
    if skipped:
        print(f"  skipped for the time budget ({args.budget_s} s): {len(skipped)} cases, e.g. {skipped[0]}")
    for name, s in summary.items():
        worst = s["min_ratio_seq_ge_512"]
        print(f"  {name}: worst ratio at seq >= {TARGET_MIN_SEQ}: "
              f"{'n/a' if worst is None else f'{worst:.2f}x'} (target >= {TARGET_RATIO:.1f}x): {s['verdict']}")
    if not all(r["check"]["ok"] for r in results):
        print("  MISMATCH: tformer's attention differs from torch's beyond the tolerance on some shapes")
        sys.exit(1)


if __name__ == "__main__":
    main()
