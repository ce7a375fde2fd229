"""Load a Hugging Face translation checkpoint into tformer and check it against
transformers: same logits, and how long each takes.

No model hub is needed: the script builds a MarianMT checkpoint with the shape of
Helsinki-NLP/opus-mt-fr-en (d_model 512, 6+6 layers, 8 heads, FFN 2048, vocab 59514)
and random weights, saves it as a local directory, and loads that directory exactly
as it would load a downloaded opus-mt model.

    python examples/huggingface_parity.py [--model-dir DIR] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(tempfile.gettempdir(), "tformer-demo-opus-mt-fr-en"),
                    help="a local HF Marian directory; built with random weights if it does not exist")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from transformers import MarianConfig, MarianMTModel

    import tformer

    torch.set_num_threads(args.threads)
    tformer.set_num_threads(args.threads)

    if not os.path.exists(os.path.join(args.model_dir, "config.json")):
        print(f"building a random-weight opus-mt-fr-en-sized MarianMT checkpoint in {args.model_dir} ...")
        torch.manual_seed(0)
        cfg = MarianConfig(vocab_size=59514, d_model=512, encoder_layers=6, decoder_layers=6,
                           encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                           decoder_ffn_dim=2048, max_position_embeddings=512, activation_function="swish",
                           scale_embedding=True, pad_token_id=59513, eos_token_id=0,
                           decoder_start_token_id=59513)
        MarianMTModel(cfg).save_pretrained(args.model_dir)

    t0 = time.perf_counter()
    model = tformer.from_huggingface(args.model_dir)
    print(f"loaded {model} in {time.perf_counter() - t0:.2f} s")
    hf = MarianMTModel.from_pretrained(args.model_dir).eval()

    # Four sentences of different lengths, EOS-terminated, and decoder inputs that start
    # with the decoder start token, as transformers' decoder_input_ids do.
    rng = np.random.default_rng(1)
    c = model.config
    src = [list(rng.integers(2, c.src_vocab_size - 1, n)) + [c.eos_id] for n in (31, 12, 5, 1)]
    tgt = [[c.decoder_start_id] + list(rng.integers(2, c.tgt_vocab_size - 1, n)) for n in (20, 9, 3, 0)]

    t0 = time.perf_counter()
    logits = model.forward(src, tgt)
    t_ours = time.perf_counter() - t0
    worst, t_hf = 0.0, 0.0
    for i, (s, t) in enumerate(zip(src, tgt)):
        with torch.inference_mode():
            t0 = time.perf_counter()
            ref = hf(input_ids=torch.tensor([s]), decoder_input_ids=torch.tensor([t])).logits[0].numpy()
            t_hf += time.perf_counter() - t0
        err = float(np.abs(logits[i, : len(t)] - ref).max() / np.abs(ref).max())
        worst = max(worst, err)
        same_argmax = bool((logits[i, : len(t)].argmax(-1) == ref.argmax(-1)).all())
        print(f"  sentence {i}: src {len(s):2d} tokens, tgt {len(t):2d} tokens, max rel err {err:.1e}, "
              f"same argmax at every position: {same_argmax}")
    print(f"logits {logits.shape}: worst relative error {worst:.1e} (target <= 1e-4): "
          f"{'OK' if worst <= 1e-4 else 'FAILED'}")
    print(f"tformer batched forward {t_ours * 1e3:.0f} ms; transformers, sentence by sentence, {t_hf * 1e3:.0f} ms")
    print("for side-by-side timings at batch 16 x 64 run: python bench/bench_forward.py")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
