"""Checks an installed tformer (a wheel in a fresh virtual environment) with NumPy only:
it is the installed copy, `import tformer` loads no CUDA library, and a small random
model's forward pass and greedy `generate` agree with each other.

    python scripts/check_installed_wheel.py [--source-tree DIR]

Exits non-zero with the reason on the first failed check; prints the figures it checked.
"""
import argparse
import os
import sys
import time

# Shared objects that only the CUDA path may load.
CUDA_LIBRARIES = ("libcuda.so", "libcudart", "libcublas", "libcublasLt", "libnvrtc", "libtformer_cuda")


def mapped_files():
    with open("/proc/self/maps", encoding="utf-8") as f:
        return {line.split()[-1] for line in f if len(line.split()) >= 6}


def cuda_mapped():
    return sorted(p for p in mapped_files() if any(name in os.path.basename(p) for name in CUDA_LIBRARIES))


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-tree", help="the repository; tformer must NOT be imported from it")
    args = parser.parse_args()

    start = time.perf_counter()
    import numpy as np
    import tformer
    import_s = time.perf_counter() - start

    location = os.path.realpath(tformer.__file__)
    if args.source_tree and location.startswith(os.path.realpath(os.path.join(args.source_tree, "python")) + os.sep):
        fail(f"tformer was imported from the source tree ({location}), not from the installed wheel")
    if "site-packages" not in location:
        fail(f"tformer was imported from {location}, not from a site-packages directory")
    if cuda_mapped():
        fail(f"`import tformer` loaded CUDA libraries: {cuda_mapped()}")

    cfg = tformer.TransformerConfig(src_vocab_size=40, tgt_vocab_size=40, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, pad_id=0, eos_id=1, bos_id=2)
    model = tformer.Transformer(cfg, seed=0)
    src = [[5, 9, 13, 21, 1]]
    result = model.generate(src, beam_size=1, max_length=12)[0].tokens[0]
    if not result:
        fail("greedy generate returned no tokens")
    # Teacher-forced forward over the generated prefix: at each step the token greedy
    # decoding chose must be the forward pass's best one (KV-cached decoder vs full pass).
    logits = model.forward(src, [[cfg.decoder_start_id] + result])
    if logits.shape != (1, len(result) + 1, cfg.tgt_vocab_size) or not np.isfinite(logits).all():
        fail(f"forward returned shape {logits.shape} (or non-finite values)")
    for step, token in enumerate(result):
        row = logits[0, step]
        if row[token] < row.max() - 1e-4 * max(1.0, abs(row.max())):
            fail(f"step {step}: generate chose {token}, forward's best is {int(row.argmax())}")
    if cuda_mapped():
        fail(f"the CPU path loaded CUDA libraries: {cuda_mapped()}")

    print(f"ok: tformer {tformer.__version__} from {os.path.dirname(location)}; Python {sys.version.split()[0]}; "
          f"import {import_s * 1e3:.0f} ms (numpy included); no CUDA library mapped; "
          f"greedy generate ({len(result)} tokens) agrees with forward")


if __name__ == "__main__":
    main()
