"""Fuzz test of generate's options and source ids at the edges (issue 13).

Seeded cases (one or two options set to an edge value: int32/int64/uint64 bounds, NaN,
inf, bools, floats, strings, None, lists; or source ids at the edges) on a tiny random
model, greedy + beam + sampling, max_length small. Every outcome must be either a
ValueError/TypeError whose message names what was set (and shows no pybind11 internals)
or a valid result (ids inside the vocabulary, lengths within max_length).

The cases run in a child process (this file run as a script) that reports each one, so a
segfault or a hang fails the test naming the case instead of taking pytest down; after a
crash a new child carries on with the next case."""
import math
import random
import subprocess
import sys
import time

import numpy as np

SEED = 13
CASES = 300
VOCAB = 24
MAX_POSITIONS = 32
CASE_TIMEOUT_S = 20.0

I32, I64, U64 = 2**31, 2**63, 2**64
INT_EDGES = [0, 1, -1, 2, 3, VOCAB - 1, VOCAB, I32 - 1, I32, -I32, -I32 - 1, I64 - 1, I64, -I64, U64 - 1, U64,
             10**9, -10**8, 10**30]
OTHER_EDGES = [math.nan, math.inf, -math.inf, True, False, 1.5, 2.0, 0.5, -0.0, 1e39, 5e-324, "3", None, [1, 2],
               b"1", np.int64(2), np.uint64(U64 - 1), np.float32("nan"), np.bool_(True), object()]
OPTIONS = ["beam_size", "max_length", "min_length", "length_penalty", "num_hypotheses", "early_stopping",
           "do_sample", "sampling_topk", "sampling_topp", "sampling_temperature", "seed", "target_prefix",
           "no_repeat_ngram_size", "repetition_penalty", "renormalize_logits", "bad_words_ids",
           "forced_bos_token_id", "forced_eos_token_id", "eos_token_id", "decoder_start_token_id", "pad_token_id",
           "return_scores", "return_attention", "max_batch_size"]
LIST_OPTIONS = {"target_prefix", "bad_words_ids"}
FORBIDDEN = ("pybind11", "object at 0x", "incompatible function arguments", "Invoked with", "_core.")


def config():
    import tformer

    return tformer.TransformerConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=16, encoder_layers=1,
                                     decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=16,
                                     decoder_ffn_dim=16, max_positions=MAX_POSITIONS, pad_id=0, eos_id=1, bos_id=2)


def _edge(rng):
    pool = INT_EDGES if rng.random() < 0.6 else OTHER_EDGES
    return pool[rng.randrange(len(pool))]


def _option_value(rng, name, batch):
    value = _edge(rng)
    if name == "target_prefix":
        shape = rng.randrange(4)
        if shape == 0:
            return [[value]] * batch
        if shape == 1:
            return [[3, value]] + [[4]] * (batch - 1)
        return value if shape == 2 else [[]] * batch
    if name == "bad_words_ids":
        return [[value]] if rng.random() < 0.5 else ([[5, value], []] if rng.random() < 0.5 else value)
    if name == "eos_token_id" and rng.random() < 0.4:
        return [1, value] if rng.random() < 0.7 else []
    return value


def _edge_ids(rng):
    """Source ids at the edges, and the input forms that must be refused by name."""
    kind = rng.randrange(10)
    bad = [VOCAB, VOCAB - 1, -1, I32, -I32 - 1, I64 - 1, -I64, U64 - 1, U64, 10**30][rng.randrange(10)]
    if kind == 0:
        return [[3, 4, bad], [5, 6]]
    if kind == 1:
        dtype = [np.int64, np.uint64, np.int32, np.int8, np.uint8][rng.randrange(5)]
        info = np.iinfo(dtype)
        return np.array([[3, 4, info.max], [5, 6, info.min]], dtype=dtype)
    if kind == 2:
        return np.array([[3.0, math.nan], [4.0, 5.0]], dtype=[np.float32, np.float64][rng.randrange(2)])
    if kind == 3:
        return [[3, 4], []] if rng.random() < 0.5 else np.zeros((2, 0), dtype=np.int64)
    if kind == 4:
        return [] if rng.random() < 0.5 else np.zeros((0, 3), dtype=np.int32)
    if kind == 5:
        return np.array([[3, 4], [5, 6]], dtype=object)
    if kind == 6:
        return [[3, [4]], [5]] if rng.random() < 0.5 else [[3, 4.0]]
    if kind == 7:
        return [np.array([3, bad % U64], dtype=np.uint64), [5]]
    if kind == 8:
        return [[3, True]] if rng.random() < 0.5 else "3 4 5"
    return [[VOCAB - 1, 3], [4]]  # valid


def make_cases(seed=SEED, n=CASES):
    """Deterministic list of (description, src, options, stream); the child and the parent
    build the same one."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        mode = rng.choice(["greedy", "beam", "sample", "beam_sample"])
        options = {"max_length": rng.randrange(1, 6), "beam_size": 1 if mode in ("greedy", "sample") else 3,
                   "do_sample": mode in ("sample", "beam_sample"), "seed": i}
        if mode == "beam" and rng.random() < 0.5:
            options["num_hypotheses"] = 2
        if rng.random() < 0.5:  # more end tokens: rows finish at different steps (then get padding)
            options["eos_token_id"] = [1] + rng.sample(range(3, VOCAB), rng.randrange(1, 10))
        src = [[3, 4, 5, 1], [6, 1], [7, 8, 1]]
        changed = []
        if rng.random() < 0.25:
            src = _edge_ids(rng)
            changed.append("src_ids")
        else:
            # The ids fed to the embedding (padding, start, forced) drawn more often.
            weighted = OPTIONS + ["pad_token_id", "decoder_start_token_id", "forced_bos_token_id"] * 2
            for name in rng.sample(weighted, rng.choice([1, 1, 2])):
                options[name] = _option_value(rng, name, len(src))
                changed.append(name)
        stream = rng.random() < 0.15 and mode in ("greedy", "sample")  # generate_stream: no beams
        cases.append((f"case {i}: {mode}, set {changed} in {options!r}", src, options, stream, changed))
    # And a sweep: every id that reaches the embedding during decoding, at every integer
    # edge, with rows that finish at different steps (finished rows are fed the padding).
    for name in ("pad_token_id", "decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id",
                 "eos_token_id"):
        for j, value in enumerate(INT_EDGES):
            mode = ("greedy", "sample", "beam")[j % 3]
            options = {"max_length": 5, "beam_size": 3 if mode == "beam" else 1, "do_sample": mode == "sample",
                       "seed": j, "target_prefix": [[1], [3, 4], [5, 6, 7]], name: value}
            cases.append((f"case {len(cases)}: {mode}, set {[name]} in {options!r}", [[3, 4, 5, 1], [6, 1], [7, 8, 1]],
                          options, False, [name]))
    return cases


def _check_result(results, src, options):
    """None when results is a valid answer to generate(src, **options), else what is wrong."""
    if len(results) != len(src):
        return f"{len(results)} results for {len(src)} sources"
    max_length = options["max_length"]
    for r in results:
        if len(r.tokens) != options.get("num_hypotheses", 1):
            return f"{len(r.tokens)} hypotheses"
        for hyp in r.tokens:
            if len(hyp) > max_length:
                return f"hypothesis of {len(hyp)} tokens for max_length {max_length}"
            if any(not 0 <= t < VOCAB for t in hyp):
                return f"token outside the vocabulary in {hyp}"
    return None


def _run_case(model, src, options, stream, changed):
    try:
        if stream:
            tokens = list(model.generate_stream(src[0] if isinstance(src, list) and src else src, **options))
            if len(tokens) > options["max_length"] or any(not 0 <= t < VOCAB for t in tokens):
                return f"BAD stream result {tokens}"
            return "OK result"
        problem = _check_result(model.generate(src, **options), src, options)
        return f"BAD {problem}" if problem else "OK result"
    except (ValueError, TypeError) as e:
        message = str(e)
        if any(f in message for f in FORBIDDEN):
            return f"BAD message shows internals: {message!r}"
        if not any(name in message for name in changed):
            return f"BAD message names none of {changed}: {type(e).__name__}: {message!r}"
        return f"OK {type(e).__name__}"
    except Exception as e:  # noqa: BLE001 - any other exception type is a finding
        return f"BAD {type(e).__name__}: {e}"


def child_main(first: int):
    import tformer

    model = tformer.Transformer(config(), seed=0)
    for i, (_, src, options, stream, changed) in enumerate(make_cases()):
        if i < first:
            continue
        print(f"START {i}", flush=True)
        print(f"DONE {i} {_run_case(model, src, options, stream, changed)}".replace("\n", " "), flush=True)


def _run_children():
    """Runs every case; returns the list of failures (descriptions with what happened)."""
    import select

    cases = make_cases()
    failures, outcomes, first = [], {}, 0
    while first < len(cases):
        proc = subprocess.Popen([sys.executable, __file__, str(first)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        current, deadline = None, time.monotonic() + 60.0  # the first case includes the import
        finished = False
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                proc.wait()
                failures.append(f"hang (> {CASE_TIMEOUT_S} s) in {cases[first if current is None else current][0]}")
                break
            line = proc.stdout.readline()
            if not line:  # the child exited
                rc = proc.wait()
                if current is not None:
                    failures.append(f"child died (exit {rc}) in {cases[current][0]}: {proc.stderr.read()[-2000:]}")
                elif rc != 0:
                    failures.append(f"child failed (exit {rc}) before case {first}: {proc.stderr.read()[-2000:]}")
                    return failures, outcomes
                else:
                    finished = True
                break
            kind, index, *rest = line.split(" ", 2)
            index = int(index)
            if kind == "START":
                current, deadline = index, time.monotonic() + CASE_TIMEOUT_S
            else:
                outcome = rest[0].strip()
                outcomes[index] = outcome
                if outcome.startswith("BAD"):
                    failures.append(f"{cases[index][0]}: {outcome}")
                current = None
        if finished:
            break
        first = (current if current is not None else first) + 1
    return failures, outcomes


def test_generate_options_and_ids_fuzz():
    failures, outcomes = _run_children()
    assert not failures, f"{len(failures)} of {len(make_cases())} cases failed:\n" + "\n".join(failures[:20])
    assert len(outcomes) == len(make_cases())
    # The fuzzer reaches both outcomes: named errors and real decodes.
    results = sum(o == "OK result" for o in outcomes.values())
    assert 0.1 * len(outcomes) < results < 0.9 * len(outcomes), f"{results} of {len(outcomes)} cases decoded"


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
