"""Decoding on the GPU: tformer against transformers' generate on the same GPU and, where it
imports and sees the GPU, CTranslate2 (issue 6, part (c)). An opus-mt-fr-en-sized Marian
model with random weights (bench/common.py), same weights and sources for every engine, the
output length forced to 32 tokens (tformer min_length = max_length = 32, transformers
min_new_tokens = max_new_tokens = 32, CTranslate2 min/max_decoding_length = 32), each engine
in float16, bfloat16 and float32 (CTranslate2: float16, bfloat16, float32 compute types).

  latency      batch 1, greedy, 32 source tokens -> 32 generated: ms per sentence
  throughput   64 sentences of 32 tokens, beam 4, batches of 32: ms per sentence, tokens/s

Times are end to end as a user sees them (token ids in, token-id lists back on the host):
medians of repeats after a warm-up, engines taking turns. Ratios are tformer's time over the
other engine's in the same dtype (< 1: tformer is faster). Target: latency <= 0.5 x
transformers'. Also reported: tformer's float32 greedy tokens against transformers' (share of
equal tokens), a check that both run the same function.

    python bench/gpu/bench_decode_gpu.py [--dtypes float16,bfloat16,float32] [--json out.json]
    python bench/gpu/bench_decode_gpu.py --device cpu --smoke     # tests the script (float32)
"""
from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_common as g  # noqa: E402

import common  # noqa: E402  (bench/common.py)

TARGET_LATENCY_RATIO = 0.5
CT2_TYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


def make_inputs(n, src_len, vocab, eos, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return [list(map(int, rng.integers(2, vocab - 1, src_len - 1))) + [eos] for _ in range(n)]


def tformer_engine(path, device, dtype, out_len):
    import tformer

    model = tformer.from_huggingface(path, device=device, dtype=dtype)

    def run(srcs, beam, batch):
        res = model.generate(srcs, beam_size=beam, max_length=out_len, min_length=out_len, max_batch_size=batch)
        return [r.tokens[0] for r in res]  # no start token, no final EOS
    return run


def hf_engine(path, device, dtype, out_len):
    import torch
    from transformers import MarianMTModel

    model = MarianMTModel.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()

    def run(srcs, beam, batch):
        out = []
        with torch.inference_mode():
            for i in range(0, len(srcs), batch):
                x = torch.tensor(srcs[i:i + batch], device=device)
                seq = model.generate(x, num_beams=beam, min_new_tokens=out_len, max_new_tokens=out_len,
                                     do_sample=False)
                out += [s[1:].tolist() for s in seq]  # drop the start token; ends with EOS
        return out
    return run


def ct2_engine(path, device, dtype, out_len, vocab):
    """A CTranslate2 translator, or raises with the reason it cannot run here."""
    import ctranslate2

    import ct2_marian

    if device.startswith("cuda") and ctranslate2.get_cuda_device_count() < 1:
        raise RuntimeError("ctranslate2 sees no CUDA device (get_cuda_device_count() == 0)")
    ct2_dir = ct2_marian.convert(path, path + "-ct2", vocab)
    index = int(device.split(":")[1]) if ":" in device else 0
    translator = ctranslate2.Translator(ct2_dir, device=device.split(":")[0], device_index=index,
                                        compute_type=CT2_TYPES[dtype])

    def run(srcs, beam, batch):
        toks = [[ct2_marian.token_name(i) for i in s] for s in srcs]
        res = translator.translate_batch(toks, beam_size=beam, max_batch_size=batch, min_decoding_length=out_len,
                                         max_decoding_length=out_len)
        return [[ct2_marian.token_id(t) for t in r.hypotheses[0]] for r in res]
    run(srcs=[[5, 6, 0]], beam=1, batch=1)  # fails here, not in the timing, if its libraries are missing
    return run


def main():
    ap = g.parser(__doc__)
    ap.add_argument("--dtypes", default="float16,bfloat16,float32")
    ap.add_argument("--engines", default="tformer,transformers,ctranslate2")
    ap.add_argument("--sentences", type=int, default=64, help="sentences of the throughput case")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32, help="batch size of the throughput case")
    ap.add_argument("--src-len", type=int, default=32)
    ap.add_argument("--out-len", type=int, default=32)
    args = ap.parse_args()
    if args.smoke and args.threads is None and args.device == "cpu":
        args.threads = 1
    g.check_args(args, ap)
    dtypes = [d for d in args.dtypes.split(",") if d]
    wanted = [e for e in args.engines.split(",") if e]
    for e in wanted:
        if e not in ("tformer", "transformers", "ctranslate2"):
            ap.error(f"--engines: unknown engine {e!r}")
    for d in dtypes:
        if d not in CT2_TYPES:
            ap.error(f"--dtypes: {d!r} is not one of {', '.join(CT2_TYPES)}")
    overrides = {}
    if args.smoke:
        args.sentences, args.batch, args.beam, args.src_len, args.out_len = 4, 2, 2, 8, 6
        overrides = dict(vocab_size=1000, pad_token_id=999, decoder_start_token_id=999, d_model=64, encoder_layers=2,
                         decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                         decoder_ffn_dim=128, max_position_embeddings=64)
    if min(args.sentences, args.batch, args.beam, args.src_len - 1, args.out_len - 1) < 1:
        ap.error("--sentences, --batch, --beam must be >= 1, --src-len and --out-len >= 2")
    notes = []
    if args.device == "cpu" and dtypes != ["float32"]:
        notes.append("cpu: tformer has float32 only there, so every engine runs float32")
        dtypes = ["float32"]
    repeats = args.repeats or (2 if args.smoke else 5)

    g.require_device(args.device)
    info = g.machine(args.device)
    sync = g.synchronizer(args.device)
    budget = g.Budget(args.budget_s)
    suffix = "-smoke" if args.smoke else ""
    path = common.make_marian_dir(os.path.join(tempfile.gettempdir(), f"tformer-gpubench-decode{suffix}"), **overrides)
    from transformers import MarianConfig

    hf_cfg = MarianConfig.from_pretrained(path)
    vocab, eos = hf_cfg.vocab_size, hf_cfg.eos_token_id

    engines, unavailable = {}, {}
    for dt in dtypes:
        makers = {"tformer": lambda: tformer_engine(path, args.device, dt, args.out_len),
                  "transformers": lambda: hf_engine(path, args.device, dt, args.out_len),
                  "ctranslate2": lambda: ct2_engine(path, args.device, dt, args.out_len, vocab)}
        for e in wanted:
            name = f"{e}-{dt}"
            try:
                engines[name] = makers[e]()
            except Exception as exc:  # noqa: BLE001 - an engine that cannot run here is reported, not fatal
                if e == "tformer":
                    raise
                unavailable[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]

    one = make_inputs(1, args.src_len, vocab, eos)
    many = make_inputs(args.sentences, args.src_len, vocab, eos, seed=1)
    check = {}
    if "tformer-float32" in engines and "transformers-float32" in engines:
        a, b = engines["tformer-float32"](one, 1, 1)[0], engines["transformers-float32"](one, 1, 1)[0]
        check["greedy_float32_agreement_with_transformers"] = sum(x == y for x, y in zip(a, b)) / max(1, len(a))

    scenarios = {"latency_b1_greedy": (one, 1, 1), f"throughput_beam{args.beam}_b{args.batch}": (many, args.beam,
                                                                                                  args.batch)}
    results, skipped = {}, []
    for sname, (srcs, beam, batch) in scenarios.items():
        if budget.exhausted():
            skipped.append(sname)
            continue
        lengths = {}
        for name, fn in engines.items():  # the same decoding work: out_len steps for every sentence
            lengths[name] = sorted({len(t) for t in fn(srcs[:batch], beam, batch)})
            if not set(lengths[name]) <= {args.out_len - 1, args.out_len}:
                raise SystemExit(f"{name} generated lengths {lengths[name]}, not {args.out_len} tokens")
        t = g.per_call({name: g.loop_runner(lambda fn=fn: fn(srcs, beam, batch), sync) for name, fn in engines.items()},
                       repeats, min_repeat_s=0.0, max_iters=1)
        n = len(srcs)
        res = {name: {"s_per_call": v["s"], "ms_per_sentence": v["s"] / n * 1e3,
                      "tokens_per_s": n * args.out_len / v["s"], "samples_s": v["samples"]} for name, v in t.items()}
        ratios = {}
        for dt in dtypes:
            mine = res.get(f"tformer-{dt}")
            for other in ("transformers", "ctranslate2"):
                theirs = res.get(f"{other}-{dt}")
                if mine and theirs:
                    ratios[f"tformer/{other}-{dt}"] = mine["s_per_call"] / theirs["s_per_call"]
        results[sname] = {"sentences": n, "beam": beam, "batch": batch, "engines": res, "ratios": ratios,
                          "generated_lengths": lengths}
    lat = results.get("latency_b1_greedy", {}).get("ratios", {})
    vs_hf = {k: v for k, v in lat.items() if k.startswith("tformer/transformers-")}
    best = min(vs_hf.values()) if vs_hf else None
    summary = {"latency_ratio_vs_transformers": vs_hf, "best": best, "target": TARGET_LATENCY_RATIO,
               "verdict": g.verdict(best, TARGET_LATENCY_RATIO, higher_is_better=False) if vs_hf else "n/a"}
    out = {"benchmark": "decode", "machine": info, "smoke": args.smoke, "notes": notes, "repeats": repeats,
           "src_len": args.src_len, "out_len": args.out_len, "dtypes": dtypes, "unavailable": unavailable,
           "check": check, "targets": {"latency_ratio_max": TARGET_LATENCY_RATIO}, "results": results,
           "skipped_for_budget": skipped, "summary": summary}
    g.write_json(args.json, out)

    size = "smoke-test Marian" if args.smoke else "opus-mt-fr-en-sized Marian"
    print(f"decoding, {size} (random weights, d_model {hf_cfg.d_model}, vocabulary {vocab}), {args.src_len} -> "
          f"{args.out_len} tokens, "
          f"{info.get('gpu') or info['device']}, torch {info['torch']}; ms per sentence (lower is better)")
    for n in notes:
        print(f"  note: {n}")
    for name, why in unavailable.items():
        print(f"  not run: {name}: {why}")
    for k, v in check.items():
        print(f"  check: {k} = {v:.0%}")
    for sname, r in results.items():
        print(f"{sname} ({r['sentences']} sentences, beam {r['beam']}, batch {r['batch']}):")
        for name, v in r["engines"].items():
            print(f"  {name:22s} {v['ms_per_sentence']:9.2f} ms/sentence {v['tokens_per_s']:10.0f} tok/s")
        for k, v in r["ratios"].items():
            tgt = f"   (target <= {TARGET_LATENCY_RATIO})" if sname.startswith("latency") and "transformers" in k else ""
            print(f"  {k:34s} {v:6.2f}x{tgt}")
    if skipped:
        print(f"  skipped for the time budget ({args.budget_s} s): {', '.join(skipped)}")
    print(f"  latency, best tformer/transformers ratio: {'n/a' if best is None else f'{best:.2f}x'} "
          f"(target <= {TARGET_LATENCY_RATIO}x): {summary['verdict']}")


if __name__ == "__main__":
    main()
