"""Fuzzing the model directory: random mutations of config.json values and of safetensors
headers, in a tiny Marian checkpoint (Hugging Face layout) and in tformer's own format.

Each case loads the directory, runs one forward and one generate (sampling, several
sources: rows finish at different steps) in a CHILD process under a 4 GiB address-space
limit, so a segfault, a hang or an allocation sized from a corrupt value fails the test
(naming the case) instead of taking pytest down. One child runs many cases in sequence and
reports each on its stdout; after a crash or a timeout a new child resumes at the next
case. Every outcome must be a ValueError / TypeError / FileNotFoundError / RuntimeError
with a message free of binding internals, or a model whose logits are finite and of the
right shape and whose generated ids are inside its vocabulary."""

import copy
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tformer

SEED = 13
N_CASES = 300
CASE_TIMEOUT_S = 30.0
MEMORY_LIMIT = 4 << 30

ALLOWED = {"ValueError", "TypeError", "FileNotFoundError", "RuntimeError"}
INTERNALS = ("0x", "pybind", "_core.", "object at", "incompatible function arguments")

# Runs in the child: cases are read from a JSON file, one result line per case on stdout.
CHILD = r"""
import json, resource, sys
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
import tformer

cases = json.load(open(sys.argv[1]))
start = int(sys.argv[2])
src = [[5, 9, 12, 7, 0], [14, 6, 0], [8, 0]]
for i in range(start, len(cases)):
    case = cases[i]
    print(json.dumps({"case": i, "event": "start"}), flush=True)
    try:
        if case["format"] == "hf":
            model = tformer.from_huggingface(case["dir"])
        else:
            model = tformer.Transformer.load(case["dir"])
        start_id = model.config.decoder_start_id
        tgt = [[start_id, 3, 4], [start_id, 5], [start_id]]
        logits = model.forward(src, tgt)
        out = model.generate(src, beam_size=1, do_sample=True, seed=1, max_length=6)
        vocab = model.config.tgt_vocab_size
        ids = [t for r in out for hyp in r.tokens for t in hyp]
        report = {"case": i, "event": "ok", "shape": list(logits.shape), "vocab": vocab,
                  "finite": bool(np.isfinite(logits).all()), "ids_in_vocab": all(0 <= t < vocab for t in ids),
                  "results": len(out)}
    except BaseException as e:
        # the named base a subclass (weights.CorruptSafetensors is a ValueError) stands for
        named = next((c.__name__ for c in type(e).__mro__
                      if c in (ValueError, TypeError, FileNotFoundError, RuntimeError)), type(e).__name__)
        report = {"case": i, "event": "error", "type": named, "message": str(e)}
    print(json.dumps(report), flush=True)
"""


# ---- mutations --------------------------------------------------------------------------

VALUES = ["", "12", "nan", "NaN", "-1", "1e309", "inf", 32.9, 0.5, -0.0, 1.0, float("nan"), float("inf"),
          True, False, None, [], [1, 2], {}, {"a": 1}, 0, 1, 2, 3, -1, -2, 7, 96, 97, 98, -10 ** 8, 10 ** 9,
          2 ** 20, 2 ** 20 + 1, 2 * 10 ** 7, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 63, -2 ** 63,
          2 ** 64, 10 ** 30, -10 ** 30]

HF_KEYS = ["d_model", "vocab_size", "decoder_vocab_size", "encoder_layers", "decoder_layers",
           "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim",
           "max_position_embeddings", "pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id",
           "forced_eos_token_id", "forced_bos_token_id", "scale_embedding", "activation_function", "model_type",
           "tie_word_embeddings", "share_encoder_decoder_embeddings", "bad_words_ids"]

GENERATION_KEYS = ["pad_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id",
                   "forced_bos_token_id", "bad_words_ids", "bos_token_id"]

TF_KEYS = ["src_vocab_size", "tgt_vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_heads",
           "decoder_heads", "encoder_ffn_dim", "decoder_ffn_dim", "activation", "pre_norm", "embed_scale",
           "max_positions", "positions", "position_ids", "position_offset", "pad_id", "bos_id", "eos_id",
           "decoder_start_id", "shared_embeddings", "tied_output", "final_logits_bias", "layer_norm_eps",
           "model_type", "extra"]


def _value(rng):
    return copy.deepcopy(rng.choice(VALUES))


def _near(rng, value):
    """A plausible neighbour of a config value: the mutations a model that still loads can make."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value - 1, value + 1, 2 * value, value // 2, 0, 1, 3, 40])
    return _value(rng)


def _mutate_json_values(rng, cfg, keys):
    """One to three keys set to random or neighbouring values, or deleted."""
    what = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(keys)
        if rng.random() < 0.1:
            cfg.pop(key, None)
            what.append(f"del {key}")
        else:
            cfg[key] = _near(rng, cfg.get(key)) if rng.random() < 0.35 else _value(rng)
            what.append(f"{key}={cfg[key]!r}")
    return ", ".join(what)


def _whole_json(rng):
    return rng.choice(['[1, 2]', '"config"', '42', 'null', '{"d_model": ', '', '[' * 100000 + ']' * 100000,
                       '{"model_type": "marian"}', '{"format": "tformer", "format_version": 1, "config": [1]}',
                       '{"format": "tformer", "format_version": "1", "config": {}}',
                       '{"format": "tformer", "format_version": 1}'])


def _read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _write_safetensors(path, header, body, length=None):
    text = header if isinstance(header, (str, bytes)) else json.dumps(header)
    raw = text.encode() if isinstance(text, str) else text
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if length is None else length) + raw + body)


def _mutate_header(rng, path):
    header, body = _read_safetensors(path)
    names = sorted(k for k in header if k != "__metadata__")
    name = rng.choice(names)
    entry = header[name]
    kind = rng.choice(["dtype", "shape", "offsets", "offsets", "swap", "entry", "whole", "length", "truncate"])
    if kind == "dtype":
        entry["dtype"] = rng.choice(["I32", "I64", "U8", "BOOL", "I8", "F16", "BF16", "F64", "F8_E4M3", "XX",
                                     5, None, ["F32"]])
    elif kind == "shape":
        shape = entry["shape"]
        entry["shape"] = rng.choice([shape[::-1], shape + [1], [-s for s in shape], [2 ** 62] * len(shape),
                                     [2 ** 64], [], [float(s) for s in shape], "big", [True] * len(shape),
                                     [s * 2 for s in shape], [0] * len(shape)])
    elif kind == "offsets":
        a, b = entry["data_offsets"]
        other = header[rng.choice(names)]["data_offsets"]
        entry["data_offsets"] = rng.choice([[b, a], [-1, b - a - 1], [a + len(body), b + len(body)], [a],
                                            [a, b, b], [float(a), float(b)], [2 ** 64, 2 ** 64 + b - a],
                                            [a - 2 ** 63, b - 2 ** 63], other, [other[0], other[0] + b - a],
                                            [a + 1, b + 1], None, "0-1"])
    elif kind == "swap":  # two tensors' data exchanged (valid when their sizes agree)
        other = header[rng.choice(names)]
        entry["data_offsets"], other["data_offsets"] = other["data_offsets"], entry["data_offsets"]
    elif kind == "entry":
        header[name] = rng.choice([[1, 2], "x", None, 5, {}, {"dtype": "F32"}, {"shape": [], "data_offsets": [0, 0]}])
    elif kind == "whole":
        header = rng.choice([[header], "header", 7, None, {}, {"__metadata__": {"format": "pt"}}])
    elif kind == "length":
        _write_safetensors(path, header, body, length=rng.choice([0, 1, 7, 2 ** 63, 2 ** 64 - 1, 10 ** 6]))
        return f"{kind}"
    else:
        data = open(path, "rb").read()
        open(path, "wb").write(data[:rng.randint(0, len(data) - 1)])
        return kind
    _write_safetensors(path, header, body)
    return f"{kind} of {name!r}: {json.dumps(header.get(name) if isinstance(header, dict) else header)[:80]}"


def make_case(rng, base, directory):
    fmt = rng.choice(["hf", "hf", "tformer"])
    shutil.copytree(base[fmt], directory)
    config_path = os.path.join(directory, "config.json")
    roll = rng.random()
    if roll < 0.55:
        generation = os.path.join(directory, "generation_config.json")
        if fmt == "hf" and os.path.exists(generation) and rng.random() < 0.25:
            config_path = generation
        cfg = json.load(open(config_path))
        if config_path == generation:
            what = "generation_config.json: " + _mutate_json_values(rng, cfg, GENERATION_KEYS)
        elif fmt == "hf":
            what = _mutate_json_values(rng, cfg, HF_KEYS)
        elif rng.random() < 0.15:  # the decoding settings a saved model keeps
            what = "extra.generation: " + _mutate_json_values(rng, cfg["config"]["extra"]["generation"],
                                                              GENERATION_KEYS)
        elif rng.random() < 0.25:  # fairseq positions counted from a random pad id (the segfault of item 2)
            cfg["config"]["position_ids"] = "count_non_pad"
            cfg["config"]["pad_id"] = _value(rng)
            what = f"count_non_pad, pad_id={cfg['config']['pad_id']!r}"
        else:
            what = _mutate_json_values(rng, cfg["config"], TF_KEYS)
        with open(config_path, "w") as f:
            f.write(json.dumps(cfg))
    elif roll < 0.6:
        text = _whole_json(rng)
        open(config_path, "w").write(text)
        what = f"config.json = {text[:40]!r}"
    else:
        what = _mutate_header(rng, os.path.join(directory, "model.safetensors"))
    return {"dir": directory, "format": fmt, "what": f"[{fmt}] {what}"}


# ---- running ------------------------------------------------------------------------------

def _run_child(cases_file, start, results):
    """Runs cases from `start` in one child; returns the index of the case that crashed or
    hung (the child is then gone), or None when the child finished them all."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, cases_file, str(start), str(MEMORY_LIMIT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    current, buf, deadline = None, b"", time.monotonic() + CASE_TIMEOUT_S
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                results[current] = {"event": "hang", "detail": f"no result within {CASE_TIMEOUT_S} s"}
                return current
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                code = proc.wait()
                if current is None and code == 0:
                    return None
                stderr = proc.stderr.read().decode(errors="replace")[-400:]
                results[current] = {"event": "crash", "detail": f"exit {code}: {stderr}"}
                return current
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg["event"] == "start":
                    current, deadline = msg["case"], time.monotonic() + CASE_TIMEOUT_S
                else:
                    results[msg["case"]] = msg
                    current = None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def problem(case, outcome):
    """'' when the outcome is acceptable, else what is wrong with it."""
    event = outcome["event"]
    if event in ("crash", "hang"):
        return f"{event}: {outcome['detail']}"
    if event == "error":
        if outcome["type"] not in ALLOWED:
            return f"{outcome['type']}: {outcome['message'][:200]}"
        if not outcome["message"].strip():
            return f"{outcome['type']} without a message"
        leaked = [s for s in INTERNALS if s in outcome["message"]]
        if leaked:
            return f"message shows internals ({leaked}): {outcome['message'][:200]}"
        return ""
    if outcome["shape"] != [3, 3, outcome["vocab"]] or not outcome["finite"]:
        return f"loaded, but logits of shape {outcome['shape']} (vocab {outcome['vocab']}), finite={outcome['finite']}"
    if not outcome["ids_in_vocab"] or outcome["results"] != 3:
        return "loaded, but generate returned ids outside the vocabulary or the wrong number of results"
    return ""


@pytest.fixture(scope="module")
def bases(zoo, tmp_path_factory):
    hf = zoo.get("marian").dir
    own = tmp_path_factory.mktemp("fuzz_base") / "tformer"
    tformer.from_huggingface(str(hf)).save(str(own))
    return {"hf": str(hf), "tformer": str(own)}


def test_fuzz_model_directories(bases, tmp_path):
    rng = random.Random(SEED)
    cases = [make_case(rng, bases, str(tmp_path / f"case{i:03d}")) for i in range(N_CASES)]
    cases_file = str(tmp_path / "cases.json")
    with open(cases_file, "w") as f:
        json.dump(cases, f)
    results = {}
    start = 0
    while start is not None and start < len(cases):
        stopped = _run_child(cases_file, start, results)
        start = None if stopped is None else stopped + 1
    failures = []
    for i, case in enumerate(cases):
        outcome = results.get(i)
        bad = "no outcome reported" if outcome is None else problem(case, outcome)
        if bad:
            failures.append(f"case {i} {case['what']}: {bad}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:30])
    # The fuzzer must reach both ends: models that still load, and refusals.
    loaded = sum(results[i]["event"] == "ok" for i in results)
    assert 10 <= loaded <= len(cases) - 100, f"{loaded} of {len(cases)} mutated directories loaded"
