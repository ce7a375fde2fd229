"""One training step of an opus-mt-fr-en-sized Marian model (d_model 512, 6+6 layers, 8 heads,
FFN 2048, vocabulary 59514, fp32): forward, label-smoothed cross-entropy, backward, gradient
clipping and AdamW. tformer.Trainer against transformers/PyTorch (MarianMTModel in train mode,
torch.nn.functional.cross_entropy, clip_grad_norm_, torch.optim.AdamW), same weights, same
batch, same thread count, same settings (dropout 0.1, label smoothing 0.1, clip 1.0), run
interleaved in one process. Prints medians, the ratio tformer / torch (< 1 is faster; the
target is <= 0.8), tokens per second, and the achieved GFLOP/s of a step counted as 3x the
forward's FLOPs (the backward is two matrix products per forward one).

    python bench/bench_train.py [--threads 2] [--repeat 5] [--batch 32] [--src-len 32] [--tgt-len 32]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SMOOTHING, DROPOUT, CLIP, LR = 0.1, 0.1, 1.0, 1e-4
BETAS, EPS = (0.9, 0.98), 1e-9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--src-len", type=int, default=32, help="source tokens per sentence (EOS included)")
    ap.add_argument("--tgt-len", type=int, default=32,
                    help="decoder tokens per sentence: start + (tgt-len - 1) target tokens, tgt-len predicted")
    ap.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "tformer-bench-opus-mt-fr-en"))
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    common.set_threads(args.threads)
    import numpy as np
    import torch
    from transformers import MarianMTModel

    import tformer

    path = common.make_marian_dir(args.model_dir)
    hf = MarianMTModel.from_pretrained(path)
    # The sinusoidal tables are fixed (nn.Embedding(_freeze=True)); transformers 5.x's
    # from_pretrained hands them back trainable. tformer does not train them: neither does torch here.
    for stack in (hf.model.encoder, hf.model.decoder):
        stack.embed_positions.weight.requires_grad_(False)
    hf_cfg = hf.config
    ours = tformer.from_huggingface(path, dtype="float32")
    cfg = ours.config
    B, S, T = args.batch, args.src_len, args.tgt_len
    rng = np.random.default_rng(0)
    src = rng.integers(2, cfg.src_vocab_size - 1, size=(B, S)).astype(np.int64)
    src[:, -1] = cfg.eos_id
    tgt = rng.integers(2, cfg.tgt_vocab_size - 1, size=(B, T - 1)).astype(np.int64)
    dec = np.concatenate([np.full((B, 1), cfg.decoder_start_id), tgt], axis=1)
    labels = np.concatenate([tgt, np.full((B, 1), cfg.eos_id)], axis=1)
    src_t, dec_t, labels_t = (torch.from_numpy(a) for a in (src, dec, labels))
    V = cfg.tgt_vocab_size

    def hf_loss(rows=slice(None)):
        logits = hf(input_ids=src_t[rows], decoder_input_ids=dec_t[rows]).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), labels_t[rows].reshape(-1),
                                                 label_smoothing=SMOOTHING)

    trainer = tformer.Trainer(ours, lr=LR, schedule="constant", warmup_steps=1, betas=BETAS, eps=EPS,
                              weight_decay=0.0, dropout=DROPOUT, label_smoothing=SMOOTHING, clip_norm=CLIP)
    # Same function first: the loss of the same weights on the same sentences, no dropout.
    hf.eval()
    with torch.no_grad():
        ref = float(hf_loss(slice(0, 2)))
    got = trainer.evaluate(src[:2], tgt[:2])
    loss_rel = abs(got - ref) / abs(ref)
    hf.train()

    params = [p for p in hf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = hf_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return float(loss.detach())

    def tformer_step():
        return trainer.step(src, tgt)

    # On a shared machine other jobs slow both engines (PyTorch more: its threads wait on each
    # other); the load average before and after says whether a run can be trusted.
    load_before = os.getloadavg()[0]
    times = common.interleaved({"tformer": tformer_step, "torch": torch_step}, args.repeat)
    load_after = os.getloadavg()[0]
    flops = 3 * common.forward_flops(B, S, T, cfg.d_model, cfg.encoder_ffn_dim, cfg.encoder_layers,
                                     cfg.decoder_layers, V)["total"]
    rate = common.gemm_rate(args.threads)
    res = {
        "threads": args.threads, "batch": B, "src_len": S, "tgt_len": T, "repeat": args.repeat,
        "torch": torch.__version__, "tformer": tformer.__version__,
        "dropout": DROPOUT, "hf_dropout": hf_cfg.dropout, "hf_attention_dropout": hf_cfg.attention_dropout,
        "hf_activation_dropout": hf_cfg.activation_dropout, "label_smoothing": SMOOTHING,
        "loss_rel_err_vs_hf": loss_rel,
        "step_s": times, "ratio": times["tformer"] / times["torch"],
        "target_tokens_per_s": {k: B * T / v for k, v in times.items()},
        "all_tokens_per_s": {k: B * (S + T) / v for k, v in times.items()},
        "step_gflop": flops / 1e9, "gflops": {k: flops / v / 1e9 for k, v in times.items()},
        "gemm_gflops": rate, "load_average_1min": [load_before, load_after],
    }
    print(f"training step, opus-mt-fr-en size, batch {B} x {S} source + {T} target tokens, cpu float32, "
          f"{args.threads} threads, torch {torch.__version__}, dropout {DROPOUT}, label smoothing {SMOOTHING}")
    print(f"  parity: loss rel err vs transformers {loss_rel:.1e}; 1-min load average {load_before:.1f} before, "
          f"{load_after:.1f} after (> {args.threads} means other jobs shared the cores)")
    print(f"  step     tformer {times['tformer']*1e3:8.0f} ms   torch {times['torch']*1e3:8.0f} ms   "
          f"tformer/torch {res['ratio']:.2f}x (target <= 0.80)")
    print(f"  target tokens/s  tformer {res['target_tokens_per_s']['tformer']:7.0f}   "
          f"torch {res['target_tokens_per_s']['torch']:7.0f}")
    print(f"  step ~ 3 x forward = {flops/1e9:.0f} GFLOP: tformer {res['gflops']['tformer']:.0f} GFLOP/s, "
          f"torch {res['gflops']['torch']:.0f} GFLOP/s (GEMM rate {rate:.0f} GFLOP/s; tformer at "
          f"{res['gflops']['tformer'] / rate:.0%} of it)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
