"""Translating a text file from the command line: `tformer translate` vs CTranslate2's
`Translator.translate_file` (its file API, with the same Hugging Face tokenizer as
source_tokenize_fn / target_detokenize_fn), optionally vs transformers (tokenize, sort by
length, generate in batches, detokenize: what a transformers user writes).

    python bench/bench_translate_file.py [--lines 2000] [--beam-size 4] [--threads 2]

The model is opus-mt-fr-en's shape with random weights, its tokenizer a SentencePiece pair
trained here on the demo's French/English corpus, its vocabulary filled up to opus-mt's size (no hub is reachable), so the text, the
tokenization and the file handling are real; the translations are not (random weights rarely
stop early: most hypotheses run to --max-length, the same work for every engine). Each engine
runs as its own command in its own process (OpenMP runtimes of two engines in one process slow
each other down), timed round-robin, best of --repeat. Reported per engine: the whole command
(start, imports, model load, translation, output) and the translation alone (each engine's own
clock), sentences/s, and how many output lines equal tformer's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import OPUS_MT_FR_EN  # noqa: E402


# ---------------------------------------------------------------- assets (made once, cached)

def make_corpus(directory, lines, seed=0):
    """The demo's French sentences (dates, prices, ages, purchases...): input.txt has `lines`
    of them, train_fr.txt / train_en.txt the tokenizer's training text."""
    from tformer.demo.corpus import make_splits

    train, valid, test = make_splits(n_train=max(lines, 4000), n_valid=1, n_test=1, seed=seed)
    with open(os.path.join(directory, "input.txt"), "w", encoding="utf-8") as f:
        f.writelines(fr + "\n" for fr, _ in train[:lines])
    for side, column in (("fr", 0), ("en", 1)):
        with open(os.path.join(directory, f"train_{side}.txt"), "w", encoding="utf-8") as f:
            f.writelines(pair[column] + "\n" for pair in train)


def make_tokenizer(directory, work, vocab_size=OPUS_MT_FR_EN["vocab_size"]):
    """opus-mt's layout: source.spm, target.spm, one vocab.json (</s> 0, <unk> 1, the pieces of
    both, <pad> last), saved by transformers' MarianTokenizer."""
    import sentencepiece as spm
    from transformers import MarianTokenizer

    models = []
    for side in ("fr", "en"):
        prefix = os.path.join(work, f"spm_{side}")
        spm.SentencePieceTrainer.train(input=os.path.join(work, f"train_{side}.txt"), model_prefix=prefix,
                                       vocab_size=1000, hard_vocab_limit=False, model_type="unigram",
                                       character_coverage=1.0, unk_id=2, eos_id=1, bos_id=-1, pad_id=0,
                                       minloglevel=2)
        models.append(prefix + ".model")
    vocab = {"</s>": 0, "<unk>": 1}
    for model in models:
        sp = spm.SentencePieceProcessor(model_file=model)
        for i in range(sp.get_piece_size()):
            if not (sp.is_control(i) or sp.is_unknown(i)):
                vocab.setdefault(sp.id_to_piece(i), len(vocab))
    # Filled up to opus-mt's 59,514 entries (pieces no SentencePiece model has), so that the
    # output projection and the softmax cost what they cost with the real models.
    while len(vocab) < vocab_size - 1:
        vocab[f"\u2581x{len(vocab)}"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    with open(os.path.join(work, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    MarianTokenizer(source_spm=models[0], target_spm=models[1], vocab=os.path.join(work, "vocab.json"),
                    source_lang="fr", target_lang="en").save_pretrained(directory)
    return len(vocab)


def make_assets(root, lines):
    """{input, model (HF directory with tokenizer), ct2 (converted)}; rebuilt when --lines changes."""
    model_dir, ct2_dir, work = (os.path.join(root, d) for d in ("model", "ct2", "work"))
    stamp = os.path.join(root, f"ready-{lines}")
    if not os.path.exists(stamp):
        import shutil

        import torch
        from transformers import MarianConfig, MarianMTModel

        shutil.rmtree(root, ignore_errors=True)
        for d in (model_dir, work):
            os.makedirs(d)
        make_corpus(work, lines)
        vocab_size = make_tokenizer(model_dir, work)
        torch.manual_seed(0)
        cfg = MarianConfig(**{**OPUS_MT_FR_EN, "vocab_size": vocab_size, "pad_token_id": vocab_size - 1,
                              "decoder_start_token_id": vocab_size - 1})
        MarianMTModel(cfg).save_pretrained(model_dir)
        import ctranslate2.converters

        ctranslate2.converters.TransformersConverter(model_dir).convert(ct2_dir)
        open(stamp, "w").close()
    return {"input": os.path.join(root, "work", "input.txt"), "model": model_dir, "ct2": ct2_dir}


# ---------------------------------------------------------------- one engine, one process

def tformer_command(a, assets, out, dtype):
    return [sys.executable, "-m", "tformer.cli", "translate", assets["model"], "-i", assets["input"], "-o", out,
            "--beam-size", str(a.beam_size), "--max-length", str(a.max_length), "--threads", str(a.threads),
            "--batch-size", str(a.batch_size), "--dtype", dtype, "--no-progress"]


def worker_ct2(a, assets, out, compute_type="default"):
    """CTranslate2's file API, tokenized by the model's own Hugging Face tokenizer."""
    import ctranslate2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(assets["model"])
    translator = ctranslate2.Translator(assets["ct2"], device="cpu", intra_threads=a.threads, inter_threads=1,
                                        compute_type=compute_type)
    stats = translator.translate_file(
        assets["input"], out, max_batch_size=a.batch_size, beam_size=a.beam_size,
        max_decoding_length=a.max_length,
        source_tokenize_fn=lambda line: tok.convert_ids_to_tokens(tok.encode(line)),
        target_detokenize_fn=lambda tokens: tok.decode(tok.convert_tokens_to_ids(tokens), skip_special_tokens=True))
    return stats.total_time_in_ms / 1000.0


def worker_hf(a, assets, out):
    """transformers as its users translate a file: sorted batches through generate."""
    import torch
    from transformers import AutoTokenizer, MarianMTModel

    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(assets["model"])
    model = MarianMTModel.from_pretrained(assets["model"]).eval()
    with open(assets["input"], encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = time.perf_counter()
    order = sorted(range(len(lines)), key=lambda i: len(tok.encode(lines[i])))
    outputs = [""] * len(lines)
    with torch.inference_mode():
        for b in range(0, len(order), a.batch_size):
            idx = order[b:b + a.batch_size]
            enc = tok([lines[i] for i in idx], return_tensors="pt", padding=True)
            gen = model.generate(**enc, num_beams=a.beam_size, max_length=a.max_length + 1,
                                 early_stopping=True)  # + 1: its max_length counts the start token
            for i, text in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
                outputs[i] = text
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in outputs)
    return time.perf_counter() - start


def run_engine(name, a, assets, out):
    """(whole command in s, translation alone in s)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    start = time.perf_counter()
    if name in ("tformer", "tformer-int8"):
        dtype = "int8" if name.endswith("int8") else "float32"
        proc = subprocess.run(tformer_command(a, assets, out, dtype), env=env, capture_output=True, text=True)
        whole = time.perf_counter() - start
        if proc.returncode:
            raise RuntimeError(proc.stderr)
        # "tformer translate: N sentences (...) in S s: ..." (its clock starts after the model load)
        translated = float(proc.stderr.strip().splitlines()[-1].split(" in ")[1].split(" s:")[0])
        return whole, translated
    argv = [sys.executable, os.path.abspath(__file__), "--worker", name, "--out", out,
            *(f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k in PASSED)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    whole = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return whole, float(proc.stdout.strip().splitlines()[-1])


PASSED = ("lines", "beam_size", "max_length", "threads", "batch_size", "cache")
WORKERS = {"ct2": worker_ct2, "ct2-int8": lambda a, assets, out: worker_ct2(a, assets, out, "int8"),
           "hf": worker_hf}


def same_lines(path_a, path_b):
    """The share of lines where one engine's words are the other's, or a prefix of them: engines
    count --max-length differently (CTranslate2 stops after that many tokens, tformer and
    transformers end the last one with the forced </s>), the same number of decoder steps."""
    with open(path_a, encoding="utf-8") as fa, open(path_b, encoding="utf-8") as fb:
        a, b = fa.read().splitlines(), fb.read().splitlines()
    if len(a) != len(b):
        return 0.0
    agree = 0
    for x, y in zip(a, b):
        x, y = x.split(), y.split()
        n = min(len(x), len(y))
        agree += x[:n] == y[:n] and abs(len(x) - len(y)) <= 2
    return agree / max(len(a), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--beam-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default="tformer,ct2,tformer-int8,ct2-int8",
                    help="comma-separated: tformer, ct2, tformer-int8, ct2-int8, hf (int8 engines are "
                         "compared with tformer-int8)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tformer-bench-translate-file"))
    ap.add_argument("--json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one engine in this process
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    assets = make_assets(a.cache, a.lines)
    if a.worker:
        print(WORKERS[a.worker](a, assets, a.out))
        return
    engines = a.engines.split(",")
    best = {e: (float("inf"), float("inf")) for e in engines}
    outputs = {e: os.path.join(a.cache, f"out-{e}.txt") for e in engines}
    for _ in range(a.repeat):  # round-robin: every engine sees the same machine state
        for e in engines:
            whole, translated = run_engine(e, a, assets, outputs[e])
            best[e] = (min(best[e][0], whole), min(best[e][1], translated))
    print(f"{a.lines} lines, beam {a.beam_size}, max length {a.max_length}, batch {a.batch_size}, "
          f"{a.threads} threads, best of {a.repeat}")
    print(f"{'engine':12} {'command s':>10} {'translate s':>12} {'sent/s':>8} {'vs tformer':>11} {'same lines':>11}")
    results = {}
    for e in engines:
        whole, translated = best[e]
        ref = "tformer-int8" if e.endswith("int8") else "tformer"  # the same precision's tformer
        ratio = translated / best[ref][1] if ref in best else float("nan")
        same = same_lines(outputs[e], outputs[ref]) if ref in outputs else float("nan")
        results[e] = {"command_s": whole, "translate_s": translated, "sentences_per_s": a.lines / translated,
                      "time_vs_tformer": ratio, "same_lines_as_tformer": same, "compared_with": ref}
        print(f"{e:12} {whole:10.2f} {translated:12.2f} {a.lines / translated:8.1f} {ratio:10.2f}x {same:10.1%}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"settings": {k: getattr(a, k) for k in PASSED}, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
