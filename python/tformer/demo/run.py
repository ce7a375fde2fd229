"""`tformer demo`: trains a small French → English model from scratch on the CPU, on
sentences made offline (corpus.py), then reports held-out exact match, BLEU and chrF (and
the same for the model quantized to int8, next to float32), translates a few examples and
draws a cross-attention heatmap.

    tformer demo --out demo-run        # writes demo-run/{metrics.json, attention.png, loss.png, model/, data/}
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time

from ..atomic_files import atomic_write_bytes

DEFAULT_OUT = "tformer-demo"
# The demo's recipe: a small model, a short warm-up, batches of ~3k tokens (what 2 cores
# train best in a few minutes; see docs in README).
RECIPE = dict(config="tiny", vocab_size=1000, spm_type="unigram", max_tokens=1500, lr=4e-3, warmup_steps=150, dropout=0.05,
              label_smoothing=0.1, eval_every=250, eval_sentences=100)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help=f"folder for the results (default ./{DEFAULT_OUT})")
    p.add_argument("--minutes", type=float, default=8.0, help="training time budget in minutes (default 8)")
    p.add_argument("--max-steps", type=int, default=0, help="stop training after this many steps (0: time only)")
    p.add_argument("--train-pairs", type=int, default=12000, help="training sentence pairs (default 12000)")
    p.add_argument("--valid-pairs", type=int, default=300, help="validation pairs (default 300)")
    p.add_argument("--test-pairs", type=int, default=500, help="held-out test pairs (default 500)")
    p.add_argument("--config", choices=["tiny", "small", "base"], default=RECIPE["config"], help="model size")
    p.add_argument("--max-tokens", type=int, default=RECIPE["max_tokens"], help="padded tokens per batch "
                   f"(default {RECIPE['max_tokens']})")
    p.add_argument("--lr", type=float, default=RECIPE["lr"], help=f"peak learning rate (default {RECIPE['lr']})")
    p.add_argument("--warmup-steps", type=int, default=RECIPE["warmup_steps"],
                   help=f"learning-rate warm-up (default {RECIPE['warmup_steps']})")
    p.add_argument("--dropout", type=float, default=RECIPE["dropout"], help=f"dropout (default {RECIPE['dropout']})")
    p.add_argument("--beam-size", type=int, default=1, help="beam size for the held-out translations (1: greedy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: tformer's choice)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_arguments(args, data, model_dir):
    from ..train_cli import make_parser

    r = RECIPE
    argv = ["--src", f"{data}/train.fr", "--tgt", f"{data}/train.en", "--valid-src", f"{data}/valid.fr",
            "--valid-tgt", f"{data}/valid.en", "--out", model_dir, "--config", args.config,
            "--vocab-size", str(r["vocab_size"]), "--spm-type", r["spm_type"], "--max-tokens", str(args.max_tokens),
            "--lr", str(args.lr), "--warmup-steps", str(args.warmup_steps), "--dropout", str(args.dropout),
            "--label-smoothing", str(r["label_smoothing"]), "--eval-every", str(r["eval_every"]),
            "--eval-sentences", str(r["eval_sentences"]), "--minutes", str(args.minutes),
            "--max-steps", str(args.max_steps), "--seed", str(args.seed), "--threads", str(args.threads),
            "--log-every", "25"]
    if args.resume:
        argv.append("--resume")
    if args.quiet:
        argv.append("--quiet")
    return make_parser().parse_args(argv)


def _pick_attention_example(test_src_ids, test_pairs):
    """A held-out sentence of middling length with a number and a noun (a date or a price
    reads well as a heatmap)."""
    order = sorted(range(len(test_pairs)), key=lambda i: (("coûte" not in test_pairs[i][0]), abs(len(test_src_ids[i]) - 14)))
    return order[0]


def run(args) -> int:
    from . import corpus as C

    start = time.time()
    out = os.path.abspath(args.out or DEFAULT_OUT)
    data, model_dir = os.path.join(out, "data"), os.path.join(out, "model")
    os.makedirs(data, exist_ok=True)
    if not args.resume and os.path.exists(model_dir):
        shutil.rmtree(model_dir)  # a fresh demo run (--resume continues an interrupted one)
    train, valid, test = C.make_splits(args.train_pairs, args.valid_pairs, args.test_pairs, seed=args.seed)
    for name, pairs in (("train", train), ("valid", valid), ("test", test)):
        C.write_pairs(pairs, os.path.join(data, f"{name}.fr"), os.path.join(data, f"{name}.en"))
    print(f"corpus: {len(train)} training pairs, {len(valid)} validation, {len(test)} held-out test "
          f"(new sentences made of training words), e.g.\n  {train[0][0]}\n  {train[0][1]}", file=sys.stderr)

    from .. import train_cli, train_eval

    summary = train_cli.train(_train_arguments(args, data, model_dir))
    if summary["exit_code"] != 0:
        return summary["exit_code"]
    model, tokenizer = summary["model"], summary["tokenizer"]

    # held-out evaluation
    t0 = time.time()
    src_ids = tokenizer.encode_source([fr for fr, _ in test])
    hyps = train_eval.translate_ids(model, tokenizer, src_ids, beam_size=args.beam_size)
    metrics = train_eval.score(hyps, [en for _, en in test])
    eval_seconds = time.time() - t0
    refs = [en for _, en in test]
    int8_metrics = int8_comparison(
        model, lambda m: train_eval.translate_ids(m, tokenizer, src_ids, beam_size=args.beam_size), refs, metrics)
    train_tokens_per_s = summary["tokens"] / max(summary["seconds"], 1e-9)  # validation passes included
    # training steps only (validation passes and checkpoints left out)
    step_tokens_per_s = summary["tokens"] / max(summary["seconds"] - summary["eval_seconds"], 1e-9)
    metrics.update(seconds=time.time() - start, train_seconds=summary["seconds"], eval_seconds=eval_seconds,
                   steps=summary["step"], epochs=summary["epoch"], train_tokens_per_s=train_tokens_per_s,
                   step_tokens_per_s=step_tokens_per_s,
                   train_pairs=len(train), test_pairs=len(test), beam_size=args.beam_size, config=args.config,
                   d_model=model.config.d_model, layers=model.config.encoder_layers, threads=_threads(),
                   examples=[{"fr": fr, "reference": en, "tformer": h} for (fr, en), h in list(zip(test, hyps))[:8]],
                   int8=int8_metrics)

    # cross-attention heatmap for one held-out pair
    from ..plots import plot_attention, plot_loss

    i = _pick_attention_example(src_ids, test)
    res = model.generate([src_ids[i]], beam_size=1, max_length=2 * len(src_ids[i]) + 16, return_attention=True)[0]
    tokens = res.tokens[0]
    weights = res.attention[0]
    tgt_pieces = tokenizer.target_pieces(tokens)
    tgt_pieces += ["</s>"] * (weights.shape[0] - len(tgt_pieces))  # the EOS row, unless max_length cut it off
    plot_attention(weights, tokenizer.source_pieces(src_ids[i]), tgt_pieces,
                   os.path.join(out, "attention.png"), title=f"{test[i][0]}\n→ {tokenizer.decode_target([tokens])[0]}")
    plot_loss(summary["history"], os.path.join(out, "loss.png"), title="tformer demo: French → English")
    metrics["attention_example"] = {"fr": test[i][0], "tformer": tokenizer.decode_target([tokens])[0]}
    atomic_write_bytes(os.path.join(out, "metrics.json"),
                       (json.dumps(metrics, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))

    print()
    for ex in metrics["examples"][:5]:
        mark = "=" if ex["tformer"] == ex["reference"] else "≠"
        print(f"  {ex['fr']}\n  {mark} {ex['tformer']}\n")
    print(f"held-out ({len(test)} new sentences): exact match {100 * metrics['exact_match']:.1f}%, "
          f"BLEU {metrics['bleu']:.1f}, chrF {metrics['chrf']:.1f}")
    q = metrics["int8"]
    print(f"int8 copy (quantized in memory, same decoding): exact match {100 * q['exact_match']:.1f}% "
          f"({100 * q['delta_exact_match']:+.1f}), BLEU {q['bleu']:.1f} ({q['delta_bleu']:+.1f}), "
          f"chrF {q['chrf']:.1f} ({q['delta_chrf']:+.1f})")
    print(f"trained {summary['step']} steps ({summary['epoch']} epochs) in {summary['seconds']:.0f} s at "
          f"{step_tokens_per_s:.0f} tokens/s (source + target); total {metrics['seconds']:.0f} s")
    print(f"wrote {out}/metrics.json, {out}/attention.png, {out}/loss.png and the model in {model_dir}")
    model_arg = shlex.quote(str(model_dir))
    print(f"translate with it: tformer translate {model_arg} -i FILE (or tformer serve {model_arg})")
    return 0


def int8_comparison(model, translate, refs, fp32_metrics) -> dict:
    """The trained model quantized to int8 in memory (docs/QUANTIZATION.md), scored on the
    same held-out set with the same decoding: its exact match, BLEU and chrF, the change
    from float32 (delta_*: int8 - float32) and its translation time.
    translate(model) -> hypotheses (strings, in the order of refs)."""
    from .. import train_eval

    int8 = model.to(dtype="int8")
    t0 = time.time()
    hyps = translate(int8)
    seconds = time.time() - t0
    scores = train_eval.score(hyps, refs)
    result = dict(scores, eval_seconds=seconds)
    for key, value in scores.items():
        result[f"delta_{key}"] = value - fp32_metrics[key]
    return result


def _threads():
    import tformer

    return tformer.get_num_threads()
