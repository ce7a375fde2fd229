"""Mixed-precision training (Trainer(precision="bf16"/"fp16")): half-precision weights and
activations, float32 gradients, master weights and AdamW moments; and its error paths.

The mixed-precision path is CUDA only: on "cpu" each device test checks the error instead.
On a GPU a tiny model trains a few steps against a float32 CPU run from the same weights
(rounded to the half dtype, as the half-precision forward sees them):
  - the float32 gradients of the first applied step are within 2 % (bf16) / 0.5 % (fp16)
    of the float32 ones (relative L2 norm over all of them; bf16 keeps 8 bits of mantissa,
    fp16 11), and within 5 times that per tensor (some are partly rounding noise: the key
    bias's gradient is 0 in exact arithmetic);
  - the losses agree to 2 % / 0.5 %;
  - the master weights moved like the float32 weights: their updates correlate > 0.9 over
    all parameters and > 0.5 per tensor (the first AdamW steps are about lr * sign(g), and
    the sign of a noise-level gradient is a coin flip);
  - the model's weights are exactly the master weights rounded to the half dtype
    (torch's round-to-nearest-even of the same float32 values).
"""

import numpy as np
import pytest
import torch
import tformer
from tformer import _core, ops

CFG = dict(src_vocab_size=30, tgt_vocab_size=30, d_model=32, encoder_layers=1, decoder_layers=1, encoder_heads=2,
           decoder_heads=2, encoder_ffn_dim=48, decoder_ffn_dim=48, max_positions=24, pad_id=0, bos_id=2, eos_id=1)
SETTINGS = dict(lr=1e-3, schedule="constant", warmup_steps=0, dropout=0.0, weight_decay=0.01)
BATCHES = [([[5, 6, 7, 8, 1], [9, 10, 1]], [[11, 12, 13], [14, 15]]),
           ([[7, 8, 9, 1], [20, 21, 22, 23, 1]], [[16, 17], [18, 19, 20, 21]]),
           ([[25, 26, 1], [3, 4, 5, 1]], [[22, 23, 24], [25, 26]])]
TORCH_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
TOL = {"bf16": 2e-2, "fp16": 5e-3}


def cfg():
    return tformer.TransformerConfig(**CFG)


def needs_cuda():
    if not tformer.cuda_available():
        pytest.skip("tformer.cuda_available() is False")


def rel_err(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


# ------------------------------------------------------------------ GPU paths (errors on cpu)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step(device, precision):
    model = tformer.Transformer(cfg(), seed=0, device=device)
    if device == "cpu":
        with pytest.raises(ValueError, match="needs a CUDA model, this one is on cpu"):
            tformer.Trainer(model, precision=precision)
        assert model.dtype == "float32"
        return
    # The float32 CPU reference starts from the weights the half-precision forward sees (the
    # same values rounded to the half dtype), so the comparison measures the compute's rounding
    # and not the weights': with unrounded ones bf16 gradients differ by ~4 %, from rounded
    # ones by ~0.7 % (fp16 ~0.1 %), on the CPU emulator of the kernels.
    reference = tformer.Transformer(cfg(), seed=0)
    init32 = {n: np.array(v) for n, v in reference.parameters().items()}
    for name, value in init32.items():
        rounded = torch.from_numpy(value).to(TORCH_HALF[precision]).float().numpy()
        reference._core.set_parameter(name, rounded)
    ref = tformer.Trainer(reference, **SETTINGS)
    trainer = tformer.Trainer(model, **SETTINGS, precision=precision)
    assert model.dtype == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert (trainer.scaler is not None) == (precision == "fp16")
    names = ref._graph.trainable
    init = {n: np.array(reference._core.parameter(n)) for n in names}  # rounded
    compared = False
    for k, (src, tgt) in enumerate(BATCHES):
        loss_ref = ref.step(src, tgt)
        loss = trainer.step(src, tgt)
        assert abs(loss - loss_ref) <= TOL[precision] * loss_ref, (k, loss, loss_ref)
        if not compared and not trainer.last_step_skipped:
            compared = True
            grads, grads_ref = trainer.gradients(), ref.gradients()
            assert all(grads[n].dtype == np.float32 for n in names)
            assert rel_err(np.concatenate([grads[n].ravel() for n in names]),
                           np.concatenate([grads_ref[n].ravel() for n in names])) <= TOL[precision]
            for name in names:
                assert rel_err(grads[name], grads_ref[name]) <= 5 * TOL[precision], name
    assert trainer.optimizer_steps >= 2
    master = trainer.master_weights()
    moved = {n: (master[n] - init32[n]).ravel() for n in names}  # the master starts unrounded
    moved_ref = {n: (np.asarray(reference._core.parameter(n)) - init[n]).ravel() for n in names}
    assert np.corrcoef(np.concatenate(list(moved.values())), np.concatenate(list(moved_ref.values())))[0, 1] > 0.9
    for name in names:
        assert np.corrcoef(moved[name], moved_ref[name])[0, 1] > 0.5, name
        rounded = torch.from_numpy(master[name]).to(TORCH_HALF[precision]).float().numpy()
        assert np.array_equal(np.asarray(model._core.parameter(name)), rounded), name


def test_mixed_precision_resume(device, tmp_path):
    """The master weights and moments are saved (float32) and restored bit for bit."""
    if device == "cpu":
        with pytest.raises(ValueError, match="cpu"):
            tformer.Trainer(tformer.Transformer(cfg(), seed=0), precision="bf16")
        return
    model = tformer.Transformer(cfg(), seed=0, device=device)
    trainer = tformer.Trainer(model, **SETTINGS, precision="fp16")
    for src, tgt in BATCHES[:2]:
        trainer.step(src, tgt)
    model.save(tmp_path / "model")
    trainer.save(tmp_path / "trainer")
    loaded = tformer.Transformer.load(tmp_path / "model", device=device)
    resumed = tformer.Trainer.load(tmp_path / "trainer", loaded)
    assert (resumed.precision, loaded.dtype, resumed.loss_scale) == ("fp16", "float16", trainer.loss_scale)
    for name, value in trainer.master_weights().items():
        assert np.array_equal(resumed.master_weights()[name], value), name
        assert np.array_equal(np.asarray(loaded._core.parameter(name)), np.asarray(model._core.parameter(name)))
        for k in (0, 1):
            assert np.array_equal(resumed._graph.moment(name, k), trainer._graph.moment(name, k)), name
    trainer.step(*BATCHES[2])
    resumed.step(*BATCHES[2])
    for name, value in trainer.master_weights().items():
        assert np.array_equal(resumed.master_weights()[name], value), name


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gemm_half_inputs_float32_output(device, dtype):
    """C (float32) += A^T B with half A and B: the mixed-precision weight gradient."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 20)).astype(np.float32)
    b = rng.standard_normal((37, 12)).astype(np.float32)
    c = rng.standard_normal((20, 12)).astype(np.float32)
    if device == "cpu":
        with pytest.raises(TypeError, match="float32"):
            ops.gemm(a, b, trans_a=True, beta=1.0, c=c, device=device, dtype=dtype, c_dtype="float32")
        return
    half = TORCH_HALF["bf16" if dtype == "bfloat16" else "fp16"]
    a16 = torch.from_numpy(a).to(half).double().numpy()
    b16 = torch.from_numpy(b).to(half).double().numpy()
    out = ops.gemm(a, b, trans_a=True, beta=1.0, c=c, device=device, dtype=dtype, c_dtype="float32")
    ref = a16.T @ b16 + c
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    # the same product written in the half dtype loses the float32 accumulator's bits
    out16 = ops.gemm(a, b, trans_a=True, beta=1.0, c=c, device=device, dtype=dtype)
    assert np.abs(out16 - ref).max() > np.abs(out - ref).max()


@pytest.mark.parametrize("half_dtype", ["bfloat16", "float16"])
def test_adamw_writes_the_half_copy(device, half_dtype):
    rng = np.random.default_rng(1)
    param, grad = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    m, v = (rng.standard_normal(1000) * 0.1).astype(np.float32), rng.random(1000).astype(np.float32) * 0.01
    kw = dict(lr=1e-2, weight_decay=0.1, step=4, grad_scale=0.5, device=device)
    if device == "cpu":
        with pytest.raises(ValueError, match="CUDA only"):
            ops.adamw(param, grad, m, v, half_dtype=half_dtype, **kw)
        return
    p32, m32, v32 = ops.adamw(param, grad, m, v, **kw)
    p, m2, v2, half = ops.adamw(param, grad, m, v, half_dtype=half_dtype, **kw)
    for x, y in ((p, p32), (m2, m32), (v2, v32)):
        assert np.array_equal(x, y)
    torch_half = torch.bfloat16 if half_dtype == "bfloat16" else torch.float16
    assert np.array_equal(half, torch.from_numpy(p32).to(torch_half).float().numpy())


def test_adamw_half_copy_must_be_half():
    needs_cuda()
    z = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="param_half must be float16 or bfloat16"):
        ops.adamw(z, z, z, z, device="cuda", half_dtype="float32")


@pytest.mark.parametrize("model_dtype, precision", [("bfloat16", "fp32"), ("float16", "bf16")])
def test_model_dtype_must_fit_the_precision(model_dtype, precision):
    needs_cuda()
    model = tformer.Transformer(cfg(), seed=0, device="cuda", dtype=model_dtype)
    with pytest.raises(ValueError, match=f"cannot train a {model_dtype} model"):
        tformer.Trainer(model, precision=precision)


# ------------------------------------------------------------------ errors on any machine


@pytest.fixture(scope="module")
def model():
    return tformer.Transformer(cfg(), seed=0)


@pytest.mark.parametrize("precision", ["fp8", "float16", "", None, 16, ["bf16"]])
def test_unknown_precision(model, precision):
    with pytest.raises(ValueError, match="precision must be one of"):
        tformer.Trainer(model, precision=precision)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_names_the_device(model, precision):
    with pytest.raises(ValueError, match=f"precision='{precision}'.*needs a CUDA model, this one is on cpu"):
        tformer.Trainer(model, precision=precision)
    assert model.dtype == "float32"


def test_train_graph_refuses_half_compute_on_cpu(model):
    with pytest.raises(ValueError, match="bfloat16 .mixed-precision. training needs a CUDA device.*cpu"):
        _core.TrainGraph(model._core, [], 0, "bfloat16")
    with pytest.raises(ValueError, match="compute dtype must be float32, float16 or bfloat16"):
        _core.TrainGraph(model._core, [], 0, "int32")


@pytest.mark.parametrize("loss_scale", ["static", "Dynamic", 0, -1.0, float("inf"), float("nan"), 1e39])
def test_bad_loss_scale_value(model, loss_scale):
    with pytest.raises(ValueError, match="loss_scale|init_scale"):
        tformer.Trainer(model, loss_scale=loss_scale)


@pytest.mark.parametrize("loss_scale", [True, [2.0], object()])
def test_bad_loss_scale_type(model, loss_scale):
    with pytest.raises(TypeError, match="loss_scale must be"):
        tformer.Trainer(model, loss_scale=loss_scale)


@pytest.mark.parametrize("kw, match", [
    (dict(init_scale=0.0), "init_scale must be a finite number > 0"),
    (dict(growth_factor=1.0), "growth_factor must be a finite number > 1"),
    (dict(backoff_factor=1.0), "backoff_factor must be in .0, 1."),
    (dict(backoff_factor=0.0), "backoff_factor must be a finite number > 0"),
    (dict(growth_interval=0), "growth_interval must be an int >= 1"),
    (dict(growth_interval=2.5), "growth_interval must be an int >= 1"),
    (dict(growth_interval=True), "growth_interval must be an int >= 1"),
])
def test_bad_scaler_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        tformer.LossScaler(**kw)


@pytest.mark.parametrize("state, match", [({"scale": -1.0, "growth_tracker": 0}, "'scale'"),
                                          ({"scale": 2.0, "growth_tracker": -1}, "'growth_tracker'")])
def test_bad_scaler_state(state, match):
    with pytest.raises(ValueError, match=match):
        tformer.LossScaler().load_state_dict(state)


def test_no_master_weights_in_float32(model):
    trainer = tformer.Trainer(model)
    with pytest.raises(ValueError, match="no master weights: this graph trains in float32"):
        trainer._graph.master("src_embed")
    weights = trainer.master_weights()  # the model's own parameters
    assert np.array_equal(weights["src_embed"], np.asarray(model._core.parameter("src_embed")))


def test_cli_precision_needs_cuda(tmp_path, capsys):
    from tformer.cli import main

    for name in ("a.fr", "a.en"):
        (tmp_path / name).write_text("un deux\n", encoding="utf-8")
    argv = ["train", "--src", str(tmp_path / "a.fr"), "--tgt", str(tmp_path / "a.en"), "--out", str(tmp_path / "m")]
    assert main(argv + ["--precision", "bf16"]) == 2
    assert "--precision bf16 (mixed precision) needs a CUDA device, got --device cpu" in capsys.readouterr().err
    assert main(argv + ["--loss-scale", "big"]) == 2
    assert "--loss-scale must be 'dynamic' or a number, got 'big'" in capsys.readouterr().err
