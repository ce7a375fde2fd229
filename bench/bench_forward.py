"""Encoder forward and full forward of an opus-mt-fr-en-sized Marian model (or, with
--family t5, a flan-t5-small-sized T5):
tformer against transformers/PyTorch, same weights, same inputs, same thread count,
interleaved in one run. Prints medians, ratios (tformer / torch: < 1 is faster) and
the fraction of this machine's measured GEMM rate that tformer's forward reaches.

    python bench/bench_forward.py [--threads 2] [--repeat 7] [--batch 16] [--len 64] [--family t5]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--len", type=int, default=64)
    ap.add_argument("--family", choices=("marian", "t5"), default="marian")
    ap.add_argument("--model-dir", help="default: a random model of the family's size in the temp folder")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both engines run there)")
    ap.add_argument("--dtype", default="float32", help="float32, or float16/bfloat16 on cuda")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    common.set_threads(args.threads)
    import numpy as np
    import torch
    from transformers import MarianMTModel, T5ForConditionalGeneration

    import tformer

    name = "opus-mt-fr-en" if args.family == "marian" else "flan-t5-small"
    path = args.model_dir or os.path.join(tempfile.gettempdir(), f"tformer-bench-{name}")
    path = (common.make_marian_dir if args.family == "marian" else common.make_t5_dir)(path)
    hf_class = MarianMTModel if args.family == "marian" else T5ForConditionalGeneration
    torch_dtype = getattr(torch, args.dtype)
    hf = hf_class.from_pretrained(path).eval().to(device=args.device, dtype=torch_dtype)
    ours = tformer.from_huggingface(path, device=args.device, dtype=args.dtype)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    cfg = ours.config
    rng = np.random.default_rng(0)
    B, L = args.batch, args.len
    src = rng.integers(2, cfg.src_vocab_size - 1, size=(B, L)).astype(np.int64)
    src[:, -1] = cfg.eos_id
    tgt = rng.integers(2, cfg.tgt_vocab_size - 1, size=(B, L)).astype(np.int64)
    tgt[:, 0] = cfg.decoder_start_id
    src_t, tgt_t = torch.from_numpy(src).to(args.device), torch.from_numpy(tgt).to(args.device)

    # Same numbers first: a benchmark of different functions would be meaningless.
    with torch.inference_mode():
        ref = hf(input_ids=src_t[:2], decoder_input_ids=tgt_t[:2]).logits.float().cpu().numpy()
    got = ours.forward(src[:2], tgt[:2])
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())

    # tformer returns numpy on the host; transformers' results are brought to the host
    # too, so that both sides pay for the same copy.
    def hf_encoder():
        with torch.inference_mode():
            hf.get_encoder()(input_ids=src_t).last_hidden_state.float().cpu()
        sync()

    def hf_forward():
        with torch.inference_mode():
            hf(input_ids=src_t, decoder_input_ids=tgt_t).logits.float().cpu()
        sync()

    enc = common.interleaved({"tformer": lambda: ours.encode(src), "torch": hf_encoder}, args.repeat)
    fwd = common.interleaved({"tformer": lambda: ours.forward(src, tgt), "torch": hf_forward}, args.repeat)
    rate = common.gemm_rate(args.threads) if args.device == "cpu" else float("nan")
    attn = cfg.encoder_heads * (cfg.head_dim or cfg.d_model // cfg.encoder_heads)
    flops = common.forward_flops(B, L, L, cfg.d_model, cfg.encoder_ffn_dim, cfg.encoder_layers, cfg.decoder_layers,
                                 cfg.tgt_vocab_size, attn=attn, ffn_mats=3 if cfg.gated_ffn else 2)
    res = {
        "family": args.family, "device": args.device, "dtype": args.dtype, "threads": args.threads, "batch": B, "len": L, "torch": torch.__version__, "tformer": tformer.__version__,
        "max_rel_err_vs_hf": rel,
        "encoder_s": enc, "forward_s": fwd,
        "encoder_ratio": enc["tformer"] / enc["torch"], "forward_ratio": fwd["tformer"] / fwd["torch"],
        "gemm_gflops": rate, "forward_gflop": flops["total"] / 1e9, "encoder_gflop": flops["encoder"] / 1e9,
        "tformer_forward_gflops": flops["total"] / fwd["tformer"] / 1e9,
        "tformer_encoder_gflops": flops["encoder"] / enc["tformer"] / 1e9,
    }
    res["forward_fraction_of_gemm_rate"] = res["tformer_forward_gflops"] / rate
    res["encoder_fraction_of_gemm_rate"] = res["tformer_encoder_gflops"] / rate
    print(f"{name} size, batch {B} x {L} tokens, {args.device} {args.dtype}, {args.threads} threads, "
          f"torch {torch.__version__}")
    print(f"  parity: max rel err vs transformers {rel:.1e}")
    print(f"  encoder  tformer {enc['tformer']*1e3:8.1f} ms   torch {enc['torch']*1e3:8.1f} ms   "
          f"tformer/torch {res['encoder_ratio']:.2f}x")
    print(f"  forward  tformer {fwd['tformer']*1e3:8.1f} ms   torch {fwd['torch']*1e3:8.1f} ms   "
          f"tformer/torch {res['forward_ratio']:.2f}x")
    print(f"  GEMM rate {rate:.0f} GFLOP/s; forward {res['forward_gflop']:.1f} GFLOP at "
          f"{res['tformer_forward_gflops']:.0f} GFLOP/s = {res['forward_fraction_of_gemm_rate']:.0%} of it; "
          f"encoder {res['encoder_fraction_of_gemm_rate']:.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
