"""dtype="int8" in the Python surface (docs/QUANTIZATION.md): Transformer, from_huggingface,
Transformer.load / save (int8 + per-row scales, bit for bit), to(), Translator, `tformer serve
--dtype int8`, `tformer train --export-dtype int8`, and every error path: unknown dtypes,
int8 on cuda, corrupt int8 files.

The reference for the int8 values is a NumPy implementation of the quantization rule of
tformer/ops/int8.h (float32 arithmetic, round half to even, [-127, 127]) applied to the float
weights, never tformer's own recorded output."""

import json
import os
import random
import shutil

import numpy as np
import pytest
import safetensors.numpy
import tformer

import test_translator as tt

FAMILIES = ["marian", "marian_untied", "bart", "m2m_100"]  # tied + shared, untied, learned positions


def quantize_ref(x):
    """tformer/ops/int8.h's rule: scale = amax / 127, q = nearbyint(x * (127 / amax)) in
    float32, clamped to [-127, 127]; an all-zero row has scale 0 and q 0."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1)
    scale = amax / np.float32(127)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def assert_int8_equal(a: dict, b: dict, what):
    assert sorted(a) == sorted(b), what
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0], err_msg=f"{what}: {name} values")
        np.testing.assert_array_equal(a[name][1], b[name][1], err_msg=f"{what}: {name} scales")
        assert a[name][0].dtype == np.int8 and a[name][1].dtype == np.float32, name


def assert_params_equal(a: dict, b: dict, what):
    assert sorted(a) == sorted(b), what
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{what}: {name}")


def small_config(**kw):
    return tformer.TransformerConfig(**{**dict(src_vocab_size=96, tgt_vocab_size=96, d_model=32, encoder_layers=1,
                                               decoder_layers=1, encoder_heads=2, decoder_heads=2,
                                               encoder_ffn_dim=48, decoder_ffn_dim=48, max_positions=32), **kw})


SRC = [[5, 9, 12, 7, 1], [14, 6, 1]]
TGT = [[0, 3, 4], [0, 5, 8]]


# ------------------------------------------------------------------------------ values


@pytest.mark.parametrize("name", FAMILIES)
def test_from_huggingface_int8_quantizes_by_the_rule(zoo, name):
    """from_huggingface(dtype="int8") == the rule applied to the float32 weights; the same bits as
    from_huggingface(float32).to(dtype="int8"); what stays float is the float32 model's."""
    path = str(zoo.get(name).dir)
    fp32 = tformer.from_huggingface(path)
    int8 = tformer.from_huggingface(path, dtype="int8")
    assert int8.dtype == "int8" and int8.device == "cpu"
    assert "dtype=int8" in repr(int8)
    q = int8.int8_parameters()
    float_params = fp32.parameters()
    assert q, "no int8 parameter"
    for pname, (values, scale) in q.items():
        ref_q, ref_scale = quantize_ref(float_params[pname])
        np.testing.assert_array_equal(scale, ref_scale, err_msg=f"{name} {pname} scales")
        np.testing.assert_array_equal(values, ref_q, err_msg=f"{name} {pname} values")
    assert any(p.endswith("fc1.weight") for p in q) and any("embed" in p for p in q)
    assert not any(p.endswith(("bias", "norm.weight")) for p in q), sorted(q)
    assert_int8_equal(fp32.to(dtype="int8").int8_parameters(), q, f"{name} from_hf int8 vs to(int8)")
    params = int8.parameters()
    for pname, value in params.items():
        assert value.dtype == np.float32, pname
        if pname in q:  # dequantized: q * scale in float32
            np.testing.assert_array_equal(value, q[pname][0].astype(np.float32) * q[pname][1][:, None], err_msg=pname)
        else:
            np.testing.assert_array_equal(value, float_params[pname], err_msg=pname)
    np.testing.assert_array_equal(int8.forward(SRC, TGT), fp32.to(dtype="int8").forward(SRC, TGT))


def test_new_int8_model_and_to_float32():
    cfg = small_config()
    fp32 = tformer.Transformer(cfg, seed=3)
    int8 = tformer.Transformer(cfg, seed=3, dtype="int8")
    assert int8.dtype == "int8"
    assert_int8_equal(int8.int8_parameters(), fp32.to(dtype="int8").int8_parameters(), "Transformer(dtype=int8)")
    back = int8.to(dtype="float32")
    assert back.dtype == "float32" and int8.dtype == "int8"  # a copy
    assert_params_equal(back.parameters(), int8.parameters(), "int8 -> float32 dequantizes")
    assert int8.to(dtype="i8") is int8  # already int8: the model itself
    with pytest.raises(ValueError, match=r"int8_parameters\(\).*float32.*to\(dtype='int8'\)"):
        fp32.int8_parameters()


def test_int8_logits_are_close_to_float32(zoo):
    """A loose sanity bound (acc's tests derive the tight one): weights and activations
    quantized to 8 bits move the logits by a few per cent of their spread."""
    path = str(zoo.get("marian").dir)
    a = tformer.from_huggingface(path).forward(SRC, TGT)
    b = tformer.from_huggingface(path, dtype="int8").forward(SRC, TGT)
    spread = np.abs(a).max()
    assert 0 < np.abs(a - b).max() < 0.1 * spread


# ------------------------------------------------------------------------------ files


@pytest.mark.parametrize("name", FAMILIES)
def test_save_and_load_are_bit_exact(zoo, tmp_path, name):
    int8 = tformer.from_huggingface(str(zoo.get(name).dir), dtype="int8")
    int8.save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["dtype"] == "int8" and meta["quantization"]["name"] == "int8_per_row"
    stored = safetensors.numpy.load_file(str(tmp_path / "model.safetensors"))
    q = int8.int8_parameters()
    for pname, (values, scale) in q.items():
        np.testing.assert_array_equal(stored[pname], values, err_msg=pname)
        np.testing.assert_array_equal(stored[pname + ".scale"], scale, err_msg=pname)
        assert stored[pname].dtype == np.int8 and stored[pname + ".scale"].dtype == np.float32
    floats = [k for k, v in stored.items() if v.dtype == np.float32 and not k.endswith(".scale")]
    assert floats and all(stored[k].dtype != np.int8 for k in floats)
    loaded = tformer.Transformer.load(tmp_path)  # dtype None: the saved one
    assert loaded.dtype == "int8" and loaded.config == int8.config
    assert_int8_equal(loaded.int8_parameters(), q, f"{name} reloaded")
    assert_params_equal(loaded.parameters(), int8.parameters(), f"{name} reloaded")
    np.testing.assert_array_equal(loaded.forward(SRC, TGT), int8.forward(SRC, TGT))
    loaded.save(tmp_path / "again")
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "model.safetensors").read_bytes()


def test_int8_file_is_about_four_times_smaller(tmp_path):
    cfg = small_config(src_vocab_size=2000, tgt_vocab_size=2000, d_model=128, encoder_ffn_dim=512,
                       decoder_ffn_dim=512, encoder_layers=2, decoder_layers=2, shared_embeddings=False,
                       tied_output=False)
    fp32 = tformer.Transformer(cfg, seed=0)
    fp32.save(tmp_path / "f")
    fp32.to(dtype="int8").save(tmp_path / "q")
    f_size = os.path.getsize(tmp_path / "f" / "model.safetensors")
    q_size = os.path.getsize(tmp_path / "q" / "model.safetensors")
    assert 3.5 < f_size / q_size < 4.0, (f_size, q_size)


def test_loading_as_int8_holds_one_float_tensor_at_a_time(tmp_path):
    """A float file loaded as int8 is quantized tensor by tensor: the Python-side peak (numpy
    buffers and file reads, which tracemalloc sees) stays near the largest tensor, far below
    the whole float model."""
    import tracemalloc

    cfg = small_config(src_vocab_size=6000, tgt_vocab_size=6000, d_model=64, shared_embeddings=False,
                       tied_output=False, encoder_layers=2, decoder_layers=2)
    fp32 = tformer.Transformer(cfg, seed=0)
    fp32.save(tmp_path)
    sizes = [v.nbytes for v in fp32.parameters().values()]
    del fp32
    tracemalloc.start()
    try:
        model = tformer.Transformer.load(tmp_path, dtype="int8")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model.dtype == "int8"
    assert peak < 1.5 * max(sizes) + (256 << 10), (peak, max(sizes), sum(sizes))
    assert peak < 0.6 * sum(sizes), (peak, sum(sizes))


def test_loading_converts_between_float_and_int8(zoo, tmp_path):
    fp32 = tformer.from_huggingface(str(zoo.get("marian_untied").dir))
    int8 = fp32.to(dtype="int8")
    fp32.save(tmp_path / "f")
    int8.save(tmp_path / "q")
    assert tformer.Transformer.load(tmp_path / "f").dtype == "float32"
    quantized = tformer.Transformer.load(tmp_path / "f", dtype="int8")  # a float file loaded as int8
    assert_int8_equal(quantized.int8_parameters(), int8.int8_parameters(), "float file loaded as int8")
    dequantized = tformer.Transformer.load(tmp_path / "q", dtype="float32")  # an int8 file loaded as float32
    assert dequantized.dtype == "float32"
    assert_params_equal(dequantized.parameters(), int8.to(dtype="float32").parameters(), "int8 file as float32")
    np.testing.assert_array_equal(dequantized.forward(SRC, TGT), int8.to(dtype="float32").forward(SRC, TGT))


# ------------------------------------------------------------------------------ Translator, serve, train


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "int8", seed=7)


def test_translator_int8(marian_dir):
    translator = tformer.Translator(str(marian_dir), dtype="int8", beam_size=2, max_length=8)
    assert translator.model.dtype == "int8"
    texts = tt.TEXTS[:3]
    results = translator.translate_batch(texts)
    assert all(isinstance(r.texts[0], str) for r in results)
    reference = tformer.Translator(str(marian_dir), beam_size=2, max_length=8)  # float32, then quantized
    reference.model = reference.model.to(dtype="int8")
    assert [r.tokens for r in reference.translate_batch(texts)] == [r.tokens for r in results]
    model = tformer.from_huggingface(str(marian_dir), dtype="int8")
    from_model = tformer.Translator(tformer.from_huggingface(str(marian_dir)), dtype="int8",
                                    tokenizer=str(marian_dir), beam_size=2, max_length=8)
    assert_int8_equal(from_model.model.int8_parameters(), model.int8_parameters(), "Translator(model, dtype=int8)")
    assert from_model.translate(texts) == translator.translate(texts)


def test_serve_dtype_int8(marian_dir, monkeypatch):
    """`tformer serve DIR --dtype int8` builds its app on an int8 Translator (uvicorn.run
    replaced: the app is taken and queried with FastAPI's test client)."""
    pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    from fastapi.testclient import TestClient

    from tformer.cli import main

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    assert main(["serve", str(marian_dir), "--dtype", "int8", "--beam-size", "2", "--max-length", "8"]) == 0
    with TestClient(apps[0], base_url="http://localhost") as c:  # a Host the loopback server takes
        health = c.get("/health").json()
        reply = c.post("/translate", json={"texts": tt.TEXTS[:2]}).json()
    assert health.get("dtype") == "int8", health
    expected = tformer.Translator(str(marian_dir), dtype="int8", beam_size=2, max_length=8).translate(tt.TEXTS[:2])
    assert reply == {"translations": expected}
    for bad, message in (["--dtype", "int4"], "int4.*float32, float16, bfloat16, int8"), \
                         (["--dtype", "int8", "--device", "cuda"], "int8 runs on the CPU only"):
        with pytest.raises(SystemExit, match=message):
            main(["serve", str(marian_dir), *bad])


def test_train_exports_int8(tmp_path, capsys):
    import test_train_cli as tc
    from tformer.cli import main
    from tformer.train_checkpoints import export_model

    d = tmp_path / "data"
    d.mkdir()
    data = dict(src=tc.write(d / "train.fr", tc.FR * 6), tgt=tc.write(d / "train.en", tc.EN * 6),
                vsrc=tc.write(d / "valid.fr", tc.FR[:4]), vtgt=tc.write(d / "valid.en", tc.EN[:4]))
    out = tmp_path / "run"
    assert main(tc.train_argv(data, out, "--max-steps", "2", "--eval-every", "2", "--eval-sentences", "0",
                              "--export-dtype", "int8")) == 0
    exported = tformer.Transformer.load(out)
    assert exported.dtype == "int8"
    checkpoint = tformer.Transformer.load(out / "checkpoints" / "step-00000002")
    assert checkpoint.dtype == "float32"  # checkpoints stay float32: training resumes from them
    assert_int8_equal(exported.int8_parameters(), checkpoint.to(dtype="int8").int8_parameters(), "export")
    with pytest.raises(SystemExit) as stop:  # argparse's own refusal, naming the choices
        main(tc.train_argv(data, tmp_path / "x", "--export-dtype", "int4"))
    assert stop.value.code == 2
    assert "--export-dtype: invalid choice: 'int4'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="export dtype must be float32 or int8, got 'float16'"):
        export_model(exported, str(tmp_path), dtype="float16")


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", ["int4", "float13", "int32", "i32"])
def test_unknown_dtype_names_the_accepted_ones(zoo, tmp_path, bad):
    accepted = r"float32, float16, bfloat16, int8"
    path = str(zoo.get("marian").dir)
    model = tformer.from_huggingface(path)
    model.save(tmp_path)
    calls = [lambda: tformer.Transformer(small_config(), dtype=bad), lambda: tformer.from_huggingface(path, dtype=bad),
             lambda: tformer.Transformer.load(tmp_path, dtype=bad), lambda: model.to(dtype=bad),
             lambda: tformer.Translator(model, dtype=bad, tokenizer=path)]
    for call in calls:
        with pytest.raises(ValueError, match=rf"{bad}.*{accepted}"):
            call()


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_int8_on_cuda_is_refused(zoo, tmp_path, device):
    """A ValueError on every machine (with or without a GPU), naming the dtypes cuda takes."""
    message = r"int8 runs on the CPU only.*float32, float16 or bfloat16"
    path = str(zoo.get("marian").dir)
    model = tformer.from_huggingface(path, dtype="int8")
    model.save(tmp_path)
    calls = [lambda: tformer.Transformer(small_config(), dtype="int8", device=device),
             lambda: tformer.from_huggingface(path, dtype="int8", device=device),
             lambda: tformer.Transformer.load(tmp_path, device=device),  # the saved dtype: int8
             lambda: model.to(device=device), lambda: model.to(device=device, dtype="int8")]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_training_an_int8_model_is_refused():
    if not hasattr(tformer, "Trainer"):
        pytest.skip("tformer.Trainer not built")
    with pytest.raises(ValueError, match=r"int8.*inference.*float32"):
        tformer.Trainer(tformer.Transformer(small_config(), dtype="int8"))


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8_saved")
    tformer.Transformer(small_config(), seed=1, dtype="int8").save(path)
    return path


def corrupt(src, dst, edit_tensors=None, edit_meta=None):
    """A copy of the int8 model directory `src` with its tensors and/or config.json edited."""
    os.makedirs(dst)
    tensors = safetensors.numpy.load_file(str(src / "model.safetensors"))
    if edit_tensors:
        edit_tensors(tensors)
    safetensors.numpy.save_file(tensors, str(dst / "model.safetensors"))
    meta = json.loads((src / "config.json").read_text())
    if edit_meta:
        edit_meta(meta)
    (dst / "config.json").write_text(json.dumps(meta))
    return dst


W = "encoder.layers.0.ffn.fc1.weight"
B = "encoder.layers.0.ffn.fc1.bias"


def _set(name, value):
    def edit(t):
        t[name] = value(t) if callable(value) else value
    return edit


def _drop(name):
    return lambda t: t.pop(name)


def _row_value(name, row, value):
    def edit(t):
        t[name] = t[name].copy()
        t[name][row] = value
    return edit


CORRUPT_CASES = {
    "missing scale": (_drop(W + ".scale"), None, rf"{W}.*no scales.*{W}\.scale.*missing"),
    "scale float16": (_set(W + ".scale", lambda t: t[W + ".scale"].astype(np.float16)), None,
                      rf"{W}\.scale.*stored as F16, expected F32"),
    "scale wrong shape": (_set(W + ".scale", lambda t: t[W + ".scale"][:-1].copy()), None,
                          rf"{W}\.scale.*shape \(47,\), expected \(48,\)"),
    "scale 2-D": (_set(W + ".scale", lambda t: t[W + ".scale"][:, None].copy()), None, rf"{W}\.scale.*shape"),
    "negative scale": (_row_value(W + ".scale", 3, -0.5), None, rf"{W}\.scale.*-0\.5 at row 3.*finite and >= 0"),
    "NaN scale": (_row_value(W + ".scale", 0, np.nan), None, rf"{W}\.scale.*nan at row 0"),
    "Inf scale": (_row_value(W + ".scale", 7, np.inf), None, rf"{W}\.scale.*inf at row 7"),
    "value -128": (_row_value(W, 2, -128), None, rf"{W}.*-128.*\[-127, 127\]"),
    "matrix stored as float": (_set(W, lambda t: t[W].astype(np.float32)), None,
                               rf"{W}\.scale'.*I8 matrix, and '{W}' is stored as F32"),
    "matrix float, no scale": (lambda t: (t.__setitem__(W, t[W].astype(np.float32)), t.pop(W + ".scale")), None,
                               rf"{W}.*stored as F32.*int8 file stores it as I8"),
    "matrix int16": (_set(W, lambda t: t[W].astype(np.int16)), None, rf"{W}.*stored as I16"),
    "bias stored as int8": (lambda t: (t.__setitem__(B, np.zeros(48, np.int8)),
                                       t.__setitem__(B + ".scale", np.ones(48, np.float32))), None,
                            rf"{B}.*stored as I8.*keep it in float32"),
    "stray scale": (_set(B + ".scale", np.ones(48, np.float32)), None,
                    rf"unexpected tensor '{B}\.scale'.*'{B}' is stored as F32"),
    "int8 in a float32 file": (None, lambda m: m.update(dtype="float32"), r"is stored as I8 but config.json says"),
    "unknown file dtype": (None, lambda m: m.update(dtype="int4"), r"dtype 'int4'.*float32, int8"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CASES))
@pytest.mark.parametrize("as_dtype", [None, "float32"])
def test_corrupt_int8_files_name_the_tensor(int8_dir, tmp_path, case, as_dtype):
    """Each corruption is a ValueError naming the tensor, whether the file is loaded as int8
    or dequantized to float32 (nothing wrong is dequantized into a float model)."""
    edit_tensors, edit_meta, message = CORRUPT_CASES[case]
    path = corrupt(int8_dir, tmp_path / "bad", edit_tensors, edit_meta)
    with pytest.raises(ValueError, match=message):
        tformer.Transformer.load(path, dtype=as_dtype)


def test_uncorrupted_copy_loads(int8_dir, tmp_path):
    """The corruption helper itself changes nothing when asked for nothing."""
    path = corrupt(int8_dir, tmp_path / "same")
    assert_int8_equal(tformer.Transformer.load(path).int8_parameters(),
                      tformer.Transformer.load(int8_dir).int8_parameters(), "copy")


def _mutate_int8_data(rng, path):
    """A scale set to a value the loader must refuse or take (NaN, ±Inf, negative, ±0), or an
    int8 weight set to -128 or another byte."""
    import test_fuzz_model_files as fz

    header, body = fz._read_safetensors(path)
    body = bytearray(body)
    names = sorted(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "I8")
    name = rng.choice(names)
    if rng.random() < 0.5:
        start, end = header[name + ".scale"]["data_offsets"]
        value = rng.choice([float("nan"), float("inf"), -float("inf"), -1.0, -1e-30, 0.0, -0.0])
        at = start + 4 * rng.randrange((end - start) // 4)
        body[at:at + 4] = np.float32(value).tobytes()
        what = f"{name}.scale row {(at - start) // 4} = {value}"
    else:
        start, end = header[name]["data_offsets"]
        value = rng.choice([-128, -127, 127, 0, rng.randint(-128, 127)])
        at = start + rng.randrange(end - start)
        body[at] = value & 0xFF
        what = f"{name} byte {at - start} = {value}"
    fz._write_safetensors(path, header, bytes(body))
    return what


def test_fuzz_int8_files(zoo, tmp_path):
    """test_fuzz_model_files' harness (a child process per run of cases, crashes and hangs
    caught) on an int8 directory: random header mutations (dtype swaps between I8 and F32
    among them) and scale / weight values. Each outcome is a ValueError-like refusal naming
    the problem, or a model whose logits are finite."""
    import test_fuzz_model_files as fz

    base = tmp_path / "base"
    tformer.from_huggingface(str(zoo.get("marian").dir), dtype="int8").save(base)
    rng = random.Random(15)
    cases = []
    for i in range(80):
        directory = tmp_path / f"case{i:03d}"
        shutil.copytree(base, directory)
        weights = str(directory / "model.safetensors")
        what = fz._mutate_header(rng, weights) if rng.random() < 0.6 else _mutate_int8_data(rng, weights)
        cases.append({"dir": str(directory), "format": "tformer", "what": what})
    cases_file = str(tmp_path / "cases.json")
    with open(cases_file, "w") as f:
        json.dump(cases, f)
    results, start = {}, 0
    while start is not None and start < len(cases):
        stopped = fz._run_child(cases_file, start, results)
        start = None if stopped is None else stopped + 1
    failures = [f"case {i} {case['what']}: {bad}" for i, case in enumerate(cases)
                if (bad := "no outcome" if i not in results else fz.problem(case, results[i]))]
    assert not failures, "\n".join(failures[:30])
    loaded = sum(r["event"] == "ok" for r in results.values())
    assert 5 <= loaded <= len(cases) - 20, f"{loaded} of {len(cases)} mutated int8 directories loaded"
