"""Training tokens/s on the GPU, bfloat16: tformer.Trainer against PyTorch (issue 6, part (b)).

Two models, random weights, built as MarianMT checkpoints that both engines load:
  opus-mt    opus-mt-fr-en's shape (transformers' Marian config: d_model 512, 6+6 layers,
             8 heads, FFN 2048, swish, vocabulary 59514, tied embeddings)
  base       the paper's base model (d_model 512, 6+6, 8 heads, FFN 2048, ReLU, vocabulary 37000)
One step = forward, label-smoothed cross-entropy (0.1), backward, clipping (1.0) and AdamW, with
dropout 0.1, on the same batch of random sentences (default 784 x 32 source + 32 target tokens
= 25088 target tokens, the paper's ~25k). tformer: Trainer(..., precision="bf16") on a float32
model (falls back to float32 and says so if this tformer's Trainer has no such precision).
PyTorch: transformers MarianMTModel(attn_implementation="sdpa"), float32 weights, forward and
loss under torch.autocast(bfloat16), torch.optim.AdamW(fused=True), clip_grad_norm_(foreach).
The batch is on the device for torch; tformer's step takes it from numpy (its API) and that
cost is counted. Steps are timed to the returned loss (a synchronisation), warm-up steps
first, the engines alternating; medians. Target: tformer tokens/s >= 1.3 x torch's.

    python bench/gpu/bench_train_gpu.py [--models opus-mt,base] [--batch 784] [--json out.json]
    python bench/gpu/bench_train_gpu.py --device cpu --smoke       # tests the script (float32)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_common as g  # noqa: E402

import common  # noqa: E402  (bench/common.py: OPUS_MT_FR_EN, make_marian_dir, forward_flops)

TARGET_RATIO = 1.3
SMOOTHING, DROPOUT, CLIP, LR, BETAS, EPS = 0.1, 0.1, 1.0, 1e-4, (0.9, 0.98), 1e-9

MODELS = {
    "opus-mt": {},
    "base": dict(vocab_size=37000, pad_token_id=36999, decoder_start_token_id=36999, activation_function="relu"),
}
SMOKE = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64)


def model_dir(name, smoke):
    overrides = {**MODELS[name], **(SMOKE if smoke else {})}
    if smoke:  # a small vocabulary too, keeping each model's pad = vocab - 1
        vocab = 1000 if name == "opus-mt" else 700
        overrides.update(vocab_size=vocab, pad_token_id=vocab - 1, decoder_start_token_id=vocab - 1)
    key = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:10]
    path = os.path.join(tempfile.gettempdir(), f"tformer-gpubench-{name}-{key}")
    return common.make_marian_dir(path, **overrides)


def make_trainer(tformer, model, precision):
    """Trainer with `precision` (bf16 mixed precision); (trainer, precision used, note)."""
    kw = dict(lr=LR, schedule="constant", warmup_steps=1, betas=BETAS, eps=EPS, weight_decay=0.0, dropout=DROPOUT,
              label_smoothing=SMOOTHING, clip_norm=CLIP)
    if precision == "float32":
        return tformer.Trainer(model, **kw), "float32", None
    try:
        return tformer.Trainer(model, precision=precision, **kw), precision, None
    except (TypeError, ValueError) as e:
        note = f"tformer: Trainer(precision={precision!r}) refused ({type(e).__name__}: {e}); ran float32"
        return tformer.Trainer(model, **kw), "float32", note


def bench_model(name, args, dev, sync, amp_dtype, precision, budget):
    import numpy as np
    import torch
    from transformers import MarianMTModel

    import tformer

    path = model_dir(name, args.smoke)
    torch.manual_seed(0)
    hf = MarianMTModel.from_pretrained(path, attn_implementation="sdpa").to(dev)
    # The sinusoidal tables are fixed; transformers 5.x loads them trainable. Neither engine trains them.
    for stack in (hf.model.encoder, hf.model.decoder):
        stack.embed_positions.weight.requires_grad_(False)
    ours = tformer.from_huggingface(path, device=args.device, dtype="float32")
    cfg = ours.config
    V = cfg.tgt_vocab_size
    B, S, T = args.batch, args.src_len, args.tgt_len
    rng = np.random.default_rng(0)
    src = rng.integers(2, cfg.src_vocab_size - 1, size=(B, S)).astype(np.int64)
    src[:, -1] = cfg.eos_id
    tgt = rng.integers(2, V - 1, size=(B, T - 1)).astype(np.int64)
    dec = np.concatenate([np.full((B, 1), cfg.decoder_start_id), tgt], axis=1)
    labels = np.concatenate([tgt, np.full((B, 1), cfg.eos_id)], axis=1)
    src_t, dec_t, labels_t = (torch.from_numpy(a).to(dev) for a in (src, dec, labels))

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def hf_loss(rows=slice(None)):
        with autocast():
            logits = hf(input_ids=src_t[rows], decoder_input_ids=dec_t[rows]).logits
            return torch.nn.functional.cross_entropy(logits.reshape(-1, V).float(), labels_t[rows].reshape(-1),
                                                     label_smoothing=SMOOTHING)

    trainer, used, note = make_trainer(tformer, ours, precision)
    # Same function first: both engines' loss of the same weights on the same sentences, no dropout.
    hf.eval()
    with torch.no_grad():
        ref = float(hf_loss(slice(0, 2)))
    got = trainer.evaluate(src[:2], tgt[:2])
    hf.train()

    params = [p for p in hf.parameters() if p.requires_grad]
    fused = dev.type == "cuda"
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, fused=fused)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = hf_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP, foreach=True)
        opt.step()
        return float(loss.detach())  # synchronises

    def tformer_step():
        return trainer.step(src, tgt)  # returns the loss: synchronises

    losses = {"tformer": [], "torch": []}
    steps = {"tformer": tformer_step, "torch": torch_step}
    for _ in range(args.warmup):
        for k, fn in steps.items():
            losses[k].append(fn())
    times = {k: [] for k in steps}
    for _ in range(args.repeats):
        for k, fn in steps.items():
            sync()
            t0 = time.perf_counter()
            losses[k].append(fn())
            times[k].append(time.perf_counter() - t0)
        if budget.exhausted() and len(times["torch"]) >= 2:
            break
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = 3 * common.forward_flops(B, S, T, cfg.d_model, cfg.encoder_ffn_dim, cfg.encoder_layers,
                                     cfg.decoder_layers, V)["total"]
    res = {
        "model": name, "config": {"d_model": cfg.d_model, "layers": [cfg.encoder_layers, cfg.decoder_layers],
                                  "ffn": cfg.encoder_ffn_dim, "vocab": V, "heads": cfg.encoder_heads},
        "batch": B, "src_len": S, "tgt_len": T, "target_tokens": B * T,
        "tformer_precision": used, "torch_autocast": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
        "loss_rel_err_vs_torch": abs(got - ref) / abs(ref), "loss_tformer": got, "loss_torch": ref,
        "step_s": med, "step_samples_s": times, "steps_timed": len(times["torch"]),
        "target_tokens_per_s": {k: B * T / v for k, v in med.items()},
        "all_tokens_per_s": {k: B * (S + T) / v for k, v in med.items()},
        "ratio": med["torch"] / med["tformer"],
        "step_tflop": flops / 1e12, "tflops": {k: flops / v / 1e12 for k, v in med.items()},
        "losses_finite": all(math.isfinite(x) for v in losses.values() for x in v),
    }
    if note:
        res["note"] = note
    if dev.type == "cuda":
        res["torch_max_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    del trainer, ours, hf, opt, params
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        tformer.empty_cache(args.device)
    return res


def main():
    ap = g.parser(__doc__)
    ap.add_argument("--models", default="opus-mt,base", help="opus-mt, base or both")
    ap.add_argument("--batch", type=int, default=784, help="sentences per batch (784 x 32 = 25088 target tokens)")
    ap.add_argument("--src-len", type=int, default=32)
    ap.add_argument("--tgt-len", type=int, default=32, help="decoder tokens: start + (tgt-len - 1) target tokens")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per engine first")
    ap.add_argument("--precision", default="bf16", help="tformer Trainer precision (bf16); float32 for both engines")
    args = ap.parse_args()
    if args.smoke and args.threads is None and args.device == "cpu":
        args.threads = 1
    g.check_args(args, ap)
    names = [m for m in args.models.split(",") if m]
    for m in names:
        if m not in MODELS:
            ap.error(f"--models: unknown model {m!r} (choose from {', '.join(MODELS)})")
    if args.smoke:
        args.batch, args.src_len, args.tgt_len, args.warmup = 4, 12, 10, 1
    if min(args.batch, args.src_len, args.tgt_len - 1) < 1:
        ap.error("--batch, --src-len must be >= 1 and --tgt-len >= 2")
    args.repeats = args.repeats or (2 if args.smoke else 5)

    import torch

    g.require_device(args.device)
    info = g.machine(args.device)
    dev = torch.device(args.device)
    sync = g.synchronizer(args.device)
    notes = []
    precision = args.precision
    if args.device == "cpu" and precision != "float32":
        notes.append("cpu: tformer has float32 only there; both engines ran float32 (no autocast)")
        precision = "float32"
    amp_dtype = None if precision == "float32" else torch.bfloat16
    budget = g.Budget(args.budget_s)
    results, skipped = [], []
    for name in names:
        if budget.exhausted():
            skipped.append(name)
            continue
        r = bench_model(name, args, dev, sync, amp_dtype, precision, budget)
        results.append(r)
        if "note" in r and r["note"] not in notes:
            notes.append(r["note"])
    ratios = [r["ratio"] for r in results]
    worst = min(ratios) if ratios else None
    out = {"benchmark": "train", "machine": info, "smoke": args.smoke, "notes": notes, "repeats": args.repeats,
           "warmup": args.warmup, "settings": {"dropout": DROPOUT, "label_smoothing": SMOOTHING, "clip": CLIP,
                                               "lr": LR, "betas": BETAS, "eps": EPS},
           "targets": {"ratio_min": TARGET_RATIO}, "results": results, "skipped_for_budget": skipped,
           "summary": {"min_ratio": worst, "verdict": g.verdict(worst, TARGET_RATIO) if ratios else "n/a"}}
    g.write_json(args.json, out)

    print(f"training step, tformer.Trainer vs transformers + torch.autocast, {info.get('gpu') or info['device']}, "
          f"torch {info['torch']}; tokens/s of target tokens, ratio = tformer/torch speed")
    for n in notes:
        print(f"  note: {n}")
    print(f"{'model':8s} {'batch':>12s} {'tformer':>9s} {'torch':>9s} | {'tok/s tformer':>13s} {'torch':>9s} "
          f"{'ratio':>6s} | {'TFLOP/s tf':>10s} {'torch':>6s} | loss rel err")
    for r in results:
        print(f"{r['model']:8s} {r['batch']:5d}x{r['src_len']}+{r['tgt_len']:<3d} "
              f"{r['tformer_precision']:>9s} {r['torch_autocast']:>9s} | "
              f"{r['target_tokens_per_s']['tformer']:13.0f} {r['target_tokens_per_s']['torch']:9.0f} "
              f"{r['ratio']:5.2f}x | {r['tflops']['tformer']:10.1f} {r['tflops']['torch']:6.1f} | "
              f"{r['loss_rel_err_vs_torch']:.1e}")
    if skipped:
        print(f"  skipped for the time budget ({args.budget_s} s): {', '.join(skipped)}")
    print(f"  worst ratio {'n/a' if worst is None else f'{worst:.2f}x'} (target >= {TARGET_RATIO}x): "
          f"{out['summary']['verdict']}")
    if not all(r["losses_finite"] for r in results):
        print("  NON-FINITE LOSS in some step")
        sys.exit(1)


if __name__ == "__main__":
    main()
