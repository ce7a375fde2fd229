"""int8 decoding is deterministic: the same tokens and the same scores, bit for bit,

* run after run;
* for a source decoded alone or inside batches of other sources, in several orders and
  chunk sizes (greedy and beam search; seeded sampling keys each source's random stream
  by its index, so it is compared across chunkings of one list);
* with 1 or 2 threads;
* with every int8 GEMM kernel (TFORMER_INT8_KERNEL=base / avx2 / avx_vnni / avx512_vnni,
  and TFORMER_CPU_ISA=avx2 against the base kernel under the same cap, each in its own
  process). Across ISA levels the float kernels (attention, LayerNorm: other vector widths,
  other summation orders) round differently, so only tokens and close scores are compared
  there.

Why it holds (tformer/ops/int8.h): a row of an int8 GEMM's output depends on that row of
its input only — the activation row is quantized alone, the int32 sums are exact and the
float epilogue has a fixed order without FMA — so neither the row count, nor the other rows,
nor the thread split, nor the instruction set can change a bit. The tests would catch a
kernel whose sums are inexact, an epilogue that differs between kernels, or a row-coupled
quantization (one scale per tensor or per batch)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tformer

import tf_testlib as lib

MAX_LEN = 16
MODES = {
    "greedy": dict(beam_size=1),
    "beam4": dict(beam_size=4, num_hypotheses=2),
    "sample": dict(beam_size=1, do_sample=True, seed=1234, sampling_topk=20, sampling_temperature=1.5),
}


def _decode(model, sources, mode, **extra):
    results = model.generate(sources, max_length=MAX_LEN, return_scores=True, **MODES[mode], **extra)
    return [(r.tokens, r.scores) for r in results]


@pytest.fixture(scope="module")
def int8_gen(gen_zoo):
    """The edited Marian of tf_testlib.GEN_SPECS (hypotheses end at varied lengths), int8."""
    ckpt = gen_zoo("marian_gen")
    model = tformer.from_huggingface(ckpt.dir).to(dtype="int8")
    assert model.dtype == "int8"
    return model, lib.gen_sources("marian_gen", 12, seed=4), {}


# A mid-size random model: k = 256 / 1024 and a 4001-row vocabulary run the kernels' full
# tiles and their tails, and its GEMMs are big enough for the packed-panel paths (a batch's
# encoder ~100 rows, beam 4 x 12 sources = 48 decode rows) next to the in-place ones (one
# row). min_length keeps its flat distributions from ending at once.
MID_CONFIG = dict(src_vocab_size=4001, tgt_vocab_size=4001, d_model=256, encoder_layers=2, decoder_layers=2,
                  encoder_heads=4, decoder_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, activation="silu",
                  max_positions=64)
MID_SEED, MID_OPTIONS = 7, {"min_length": 8}


def _mid_sources():
    rng = np.random.default_rng(8)
    return [[int(t) for t in rng.integers(3, 4001, n)] + [1] for n in rng.integers(1, 16, 12)]


@pytest.fixture(scope="module")
def int8_mid():
    model = tformer.Transformer(tformer.TransformerConfig(**MID_CONFIG), seed=MID_SEED).to(dtype="int8")
    return model, _mid_sources(), MID_OPTIONS


@pytest.fixture(params=["gen", "mid"])
def int8_model(request):
    return request.getfixturevalue(f"int8_{request.param}")


def test_run_to_run(int8_model):
    model, sources, extra = int8_model
    for mode in MODES:
        assert _decode(model, sources, mode, **extra) == _decode(model, sources, mode, **extra), mode


@pytest.mark.parametrize("mode", ["greedy", "beam4"])
def test_alone_equals_in_any_batch(int8_model, mode):
    model, sources, extra = int8_model
    alone = [_decode(model, [s], mode, **extra)[0] for s in sources]
    assert len({tuple(tokens[0]) for tokens, _ in alone}) > len(sources) // 2, "degenerate reference"
    rng = np.random.default_rng(0)
    for order in (list(range(len(sources))), list(reversed(range(len(sources)))),
                  [int(i) for i in rng.permutation(len(sources))]):
        for chunk in (0, 5):
            batch = _decode(model, [sources[i] for i in order], mode, max_batch_size=chunk, **extra)
            for pos, i in enumerate(order):
                assert batch[pos] == alone[i], f"{mode}: source {i} at position {pos} (chunks of {chunk})"


def test_seeded_sampling_independent_of_chunking(int8_model):
    model, sources, extra = int8_model
    whole = _decode(model, sources, "sample", **extra)
    assert len({tuple(t[0]) for t, _ in whole}) > len(sources) // 2  # really sampled
    for chunk in (1, 5):
        assert _decode(model, sources, "sample", max_batch_size=chunk, **extra) == whole, chunk
    other_seed = model.generate(sources, max_length=MAX_LEN, **{**MODES["sample"], "seed": 99}, **extra)
    assert [r.tokens for r in other_seed] != [t for t, _ in whole]


def test_one_thread_equals_two(int8_model):
    model, sources, extra = int8_model
    before = tformer.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            tformer.set_num_threads(threads)
            results[threads] = {mode: _decode(model, sources, mode, **extra) for mode in MODES}
    finally:
        tformer.set_num_threads(before)
    assert results[1] == results[2]


# One process per kernel: the mid-size model and the edited Marian, int8, every mode; scores
# as float.hex(), all as JSON.
KERNEL_SCRIPT = r"""
import json, sys
import tformer

def kernel_results(gen_dir, gen_sources, modes, mid):
    model = tformer.Transformer(tformer.TransformerConfig(**mid["config"]), seed=mid["seed"]).to(dtype="int8")
    gen = tformer.from_huggingface(gen_dir).to(dtype="int8")
    out = {"kernel": tformer.ops.cpu_int8_kernel()}
    for name, model, sources, extra in (("mid", model, mid["sources"], mid["options"]), ("gen", gen, gen_sources, {})):
        for mode, opts in modes.items():
            res = model.generate(sources, max_length=16, return_scores=True, **opts, **extra)
            out[name + "/" + mode] = [[r.tokens, [float(s).hex() for s in r.scores]] for r in res]
    return out

if __name__ == "__main__":
    tformer.set_num_threads(int(sys.argv[1]))
    try:
        tformer.ops.cpu_int8_kernel()
    except ValueError as e:
        print(json.dumps({"unavailable": str(e)}))
        sys.exit(0)
    print(json.dumps(kernel_results(sys.argv[2], *(json.loads(a) for a in sys.argv[3:]))))
"""
MID = dict(config=MID_CONFIG, seed=MID_SEED, sources=_mid_sources(), options=MID_OPTIONS)

KERNEL_RUNS = {  # name: (environment, threads)
    "base, 1 thread": ({"TFORMER_INT8_KERNEL": "base"}, 1),
    "avx2": ({"TFORMER_INT8_KERNEL": "avx2"}, 2),
    "avx_vnni": ({"TFORMER_INT8_KERNEL": "avx_vnni"}, 2),
    "avx512_vnni": ({"TFORMER_INT8_KERNEL": "avx512_vnni"}, 2),
    # Capped at AVX2, the float kernels (attention, norms) are the AVX2 builds: that run is
    # compared with the base int8 kernel under the same cap.
    "TFORMER_CPU_ISA=avx2": ({"TFORMER_CPU_ISA": "avx2"}, 2),
    "TFORMER_CPU_ISA=avx2, base, 1 thread": ({"TFORMER_CPU_ISA": "avx2", "TFORMER_INT8_KERNEL": "base"}, 1),
}


def _run_kernel(env_extra, threads, gen_dir, sources):
    env = {k: v for k, v in os.environ.items() if k not in ("TFORMER_INT8_KERNEL", "TFORMER_CPU_ISA")}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", KERNEL_SCRIPT, str(threads), str(gen_dir), json.dumps(sources),
                           json.dumps(MODES), json.dumps(MID)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_kernel_decodes_the_same(gen_zoo):
    ckpt = gen_zoo("marian_gen")
    sources = lib.gen_sources("marian_gen", 12, seed=4)
    runs = {name: _run_kernel(env, threads, ckpt.dir, sources) for name, (env, threads) in KERNEL_RUNS.items()}
    script = {"__name__": "kernel_script"}
    exec(KERNEL_SCRIPT, script)
    runs["this process"] = script["kernel_results"](str(ckpt.dir), sources, MODES, MID)
    ran = {name: r for name, r in runs.items() if "unavailable" not in r}
    for name, r in runs.items():  # a kernel may be missing only for lack of instructions
        if "unavailable" in r:
            assert "lacks the instructions" in r["unavailable"] and name in ("avx_vnni", "avx512_vnni"), r
    assert ran["base, 1 thread"]["kernel"] == "base"
    assert ran["avx2"]["kernel"] == ran["TFORMER_CPU_ISA=avx2"]["kernel"] == "avx2"
    for name in ("avx_vnni", "avx512_vnni"):
        if name in ran:
            assert ran[name]["kernel"] == name
    capped = {name: ran.pop(name) for name in list(ran) if name.startswith("TFORMER_CPU_ISA")}
    for runs_, base in ((ran, "base, 1 thread"), (capped, "TFORMER_CPU_ISA=avx2, base, 1 thread")):
        reference = runs_[base]
        for name, r in runs_.items():
            for key in reference:
                if key != "kernel":
                    assert r[key] == reference[key], f"{name} ({r['kernel']}) differs from {base} on {key}"
    # Across ISA levels only the float kernels' rounding differs: the edited Marian's
    # (peaked) decisions are the same, its scores within float32 noise.
    reference, avx2 = ran["base, 1 thread"], capped["TFORMER_CPU_ISA=avx2"]
    for key in (k for k in reference if k.startswith("gen/")):
        for (tokens, scores), (tokens_capped, scores_capped) in zip(reference[key], avx2[key]):
            assert tokens == tokens_capped, key
            np.testing.assert_allclose([float.fromhex(x) for x in scores_capped], [float.fromhex(x) for x in scores],
                                       rtol=1e-5, atol=1e-5, err_msg=key)
    # the results are not degenerate: the modes differ, the mid model's hypotheses too
    assert reference["mid/greedy"] != reference["mid/sample"] and reference["gen/greedy"] != reference["gen/beam4"]
    assert len({tuple(h[0][0]) for h in reference["mid/beam4"]}) > len(reference["mid/beam4"]) // 2
