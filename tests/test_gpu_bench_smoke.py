"""The GPU benchmarks of bench/gpu/ (bench_attention.py, bench_train_gpu.py,
bench_decode_gpu.py) run end to end at tiny sizes with --device cpu --smoke: each writes its
JSON with the fields that docs/PERFORMANCE.md ("GPU check") describes, positive finite
figures, and tformer's results agreeing with PyTorch's / transformers'. Their argument errors
exit with a message. The same scripts run on a GPU in bench/gpu/full_check.sh."""

import importlib
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(ROOT, "bench", "gpu")


SMOKE = ("bench_attention.py", "bench_train_gpu.py", "bench_decode_gpu.py")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The three scripts with --device cpu --smoke, started together (most of each run is
    importing torch and transformers): name -> (json, stdout)."""
    tmp = tmp_path_factory.mktemp("gpu_bench_smoke")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {}
    for name in SMOKE:
        out = os.path.join(str(tmp), f"{name}.json")
        cmd = [sys.executable, os.path.join(GPU, name), "--device", "cpu", "--smoke", "--json", out]
        procs[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env), out)
    results = {}
    for name, (proc, out) in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        if proc.returncode == 0:
            with open(out) as f:
                results[name] = (json.load(f), stdout)
        else:
            results[name] = (None, f"{name} failed (exit {proc.returncode}):\n{stdout}\n{stderr[-3000:]}")
    return results


def smoke_result(smoke, name):
    res, stdout = smoke[name]
    assert res is not None, stdout
    return res, stdout


def run_main(script, args, capsys):
    """script's main() in this process with these arguments: (exit code, stderr)."""
    sys.path.insert(0, GPU)
    try:
        module = importlib.import_module(script[:-3])
    finally:
        sys.path.remove(GPU)
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        with pytest.raises(SystemExit) as exc:
            module.main()
    finally:
        sys.argv = argv
    code = exc.value.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
        return 1, err + code
    return code, err


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def check_machine(res):
    m = res["machine"]
    assert m["device"] == "cpu" and m["torch"] and m["tformer"] and m["date_utc"]
    assert res["smoke"] is True


def test_attention_smoke(smoke):
    res, stdout = smoke_result(smoke, "bench_attention.py")
    check_machine(res)
    assert res["benchmark"] == "attention" and res["skipped_for_budget"] == []
    # 2 seqs x 2 head dims x causal/not, float32 on the cpu
    assert len(res["results"]) == 8
    assert {(r["seq"], r["head_dim"], r["causal"]) for r in res["results"]} == {
        (s, d, c) for s in (32, 64) for d in (16, 32) for c in (False, True)}
    for r in res["results"]:
        assert r["dtype"] == "float32" and r["batch"] * r["seq"] == res["tokens"]
        assert r["heads"] * r["head_dim"] == res["width"]
        full = 4.0 * r["batch"] * r["heads"] * r["seq"] ** 2 * r["head_dim"]
        assert r["fwd_gflop"] * 1e9 == pytest.approx(full / 2 if r["causal"] else full)
        for p in ("fwd", "bwd"):
            x = r[p]
            for key in ("tformer_ms", "torch_ms", "tformer_tflops", "torch_tflops", "ratio"):
                assert positive(x[key]), (p, key, x)
            flop = r["fwd_gflop"] * 1e9 * (2.5 if p == "bwd" else 1.0)
            assert x["tformer_tflops"] == pytest.approx(flop / (x["tformer_ms"] * 1e-3) / 1e12)
            assert x["ratio"] == pytest.approx(x["torch_ms"] / x["tformer_ms"])
        # float32 on both sides: the same function to rounding
        assert r["check"]["ok"] and r["check"]["out_rel_err"] < 1e-5 and r["check"]["dq_rel_err"] < 1e-5
    assert set(res["summary"]) == {"fwd", "bwd"}  # no seq >= 512 in the smoke shapes: n/a
    assert all(s["verdict"] == "n/a" for s in res["summary"].values())
    assert "check (rel err" in stdout and "target >= 1.0x" in stdout


def test_train_smoke(smoke):
    res, stdout = smoke_result(smoke, "bench_train_gpu.py")
    check_machine(res)
    assert [r["model"] for r in res["results"]] == ["opus-mt", "base"]
    for r in res["results"]:
        assert r["tformer_precision"] == "float32" and r["torch_autocast"] == "off"
        assert r["losses_finite"] and r["steps_timed"] == res["repeats"]
        # same weights, same sentences, float32: the same loss to rounding
        assert r["loss_rel_err_vs_torch"] < 1e-4
        for engine in ("tformer", "torch"):
            assert positive(r["step_s"][engine]) and positive(r["target_tokens_per_s"][engine])
            assert r["target_tokens_per_s"][engine] == pytest.approx(r["target_tokens"] / r["step_s"][engine])
        assert r["ratio"] == pytest.approx(r["target_tokens_per_s"]["tformer"] / r["target_tokens_per_s"]["torch"])
    assert res["results"][1]["config"]["vocab"] != res["results"][0]["config"]["vocab"]
    assert res["summary"]["verdict"] in ("meets", "MISSES")
    assert "target >= 1.3x" in stdout


def test_decode_smoke(smoke):
    res, stdout = smoke_result(smoke, "bench_decode_gpu.py")
    check_machine(res)
    assert res["dtypes"] == ["float32"]
    assert res["check"]["greedy_float32_agreement_with_transformers"] == 1.0
    assert set(res["results"]) == {"latency_b1_greedy", "throughput_beam2_b2"}
    for name, r in res["results"].items():
        engines = r["engines"]
        assert {"tformer-float32", "transformers-float32"} <= set(engines)
        for e, v in engines.items():
            assert positive(v["ms_per_sentence"]) and positive(v["tokens_per_s"]), (name, e)
            # every engine decoded out_len steps (tformer's lists leave out the final EOS)
            assert set(r["generated_lengths"][e]) <= {res["out_len"] - 1, res["out_len"]}
        ratio = r["ratios"]["tformer/transformers-float32"]
        assert ratio == pytest.approx(engines["tformer-float32"]["s_per_call"]
                                      / engines["transformers-float32"]["s_per_call"])
    # CTranslate2 either ran (it is installed with the test requirements here) or says why not
    for dt in res["dtypes"]:
        assert (f"ctranslate2-{dt}" in res["results"]["latency_b1_greedy"]["engines"]) != \
            (f"ctranslate2-{dt}" in res["unavailable"])
    assert res["summary"]["verdict"] in ("meets", "MISSES")
    assert "target <= 0.5" in stdout


@pytest.mark.parametrize("script,args,message", [
    ("bench_attention.py", ["--device", "tpu"], "--device must be cpu or cuda"),
    ("bench_attention.py", ["--device", "cpu", "--seqs", "100", "--tokens", "256"], "not a multiple of seq 100"),
    ("bench_attention.py", ["--device", "cpu", "--head-dims", "48"], "not a multiple of head_dim 48"),
    ("bench_train_gpu.py", ["--device", "cpu", "--models", "big"], "unknown model 'big'"),
    ("bench_train_gpu.py", ["--device", "cpu", "--repeats", "0"], "--repeats must be >= 1"),
    ("bench_decode_gpu.py", ["--device", "cpu", "--dtypes", "int8"], "'int8' is not one of"),
    ("bench_decode_gpu.py", ["--device", "cpu", "--engines", "onnx"], "unknown engine 'onnx'"),
])
def test_argument_errors(script, args, message, capsys):
    code, err = run_main(script, args, capsys)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("script", SMOKE)
def test_cuda_unavailable_is_reported(script, capsys):
    import tformer

    if tformer.cuda_available():
        pytest.skip("this machine has a usable GPU")
    code, err = run_main(script, ["--device", "cuda"], capsys)
    assert code == 1 and "tformer cannot use cuda" in err, err


def test_trainer_precision_fallback():
    """bench_train_gpu asks for Trainer(precision='bf16'); a tformer without it (or refusing it
    for this model) gives a float32 trainer and a note saying so, never a silent change."""
    import tformer

    sys.path.insert(0, GPU)
    try:
        bench_train_gpu = importlib.import_module("bench_train_gpu")
    finally:
        sys.path.remove(GPU)
    model = tformer.Transformer(tformer.TransformerConfig(src_vocab_size=16, tgt_vocab_size=16, d_model=8,
                                                          encoder_layers=1, decoder_layers=1, encoder_heads=2,
                                                          decoder_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16))
    trainer, used, note = bench_train_gpu.make_trainer(tformer, model, "bf16")
    assert isinstance(trainer, tformer.Trainer)
    if used == "float32":
        assert note and "precision='bf16'" in note and "ran float32" in note
    else:
        assert used == "bf16" and note is None
    trainer, used, note = bench_train_gpu.make_trainer(tformer, model, "float32")
    assert used == "float32" and note is None
