"""int8 models in the C++ core (issue 15): every Linear weight and token table stored as int8
with one float32 scale per row (tformer/ops/int8.h's rule), everything else float32,
activations float32 and quantized per row on entry to each int8 GEMM.

References: the quantization rule written again in NumPy (float32 arithmetic, as the rule
says), the float32 model holding the dequantized matrices, and the model's own teacher-forced
forward for its decode loop. Nothing compares against recorded output."""
import numpy as np
import pytest

import tformer
from tformer import _core

BASE = dict(src_vocab_size=53, tgt_vocab_size=61, d_model=32, encoder_layers=2, decoder_layers=2, encoder_heads=4,
            decoder_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=40, max_positions=64, pad_id=0, eos_id=1, bos_id=2)
CONFIGS = {
    # Marian: one shared table for both embeddings and the output, a final_logits_bias.
    "marian": dict(src_vocab_size=61, shared_embeddings=True, tied_output=True, final_logits_bias=True,
                   positions="sinusoidal_marian", model_type="marian"),
    # BART-like: learned positions at offset 2, embedding LayerNorm, shared embeddings, own head.
    "bart": dict(src_vocab_size=61, shared_embeddings=True, tied_output=False, positions="learned",
                 position_offset=2, embed_norm=True, activation="gelu", model_type="bart"),
    # mBART / M2M100-like: pre-norm with final norms, separate tables, tied decoder output.
    "prenorm": dict(shared_embeddings=False, tied_output=True, pre_norm=True, encoder_final_norm=True,
                    decoder_final_norm=True, positions="sinusoidal_fairseq", position_ids="count_non_pad",
                    model_type="m2m_100"),
    # T5 v1.1: RMSNorm, no biases, gated FFN, relative position bias, own head, logits scale.
    "t5": dict(src_vocab_size=61, shared_embeddings=True, tied_output=False, rms_norm=True, linear_bias=False,
               head_dim=10, attention_scale=1.0, gated_ffn=True, activation="gelu_tanh", positions="none",
               relative_attention_buckets=16, relative_attention_max_distance=20, pre_norm=True,
               encoder_final_norm=True, decoder_final_norm=True, embed_scale=1.0, logits_scale=32 ** -0.5,
               decoder_start_id=0, bos_id=None, model_type="t5"),
}


def config(name):
    return tformer.TransformerConfig(**{**BASE, **CONFIGS[name]})


def quantize_reference(x):
    """The contract's rule in NumPy: per row amax / 127, nearbyint (half to even) of the
    float32 product x * (127 / amax), clamped to [-127, 127]; all-zero rows: 0 and scale 0."""
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=1)
    scale = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    return q, scale


def random_parameters(cfg, seed=0):
    """Every parameter drawn at random (biases and norms too, so that a bias dropped or added
    twice shows; the output bias large enough to move the argmax)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in cfg.to_core().parameter_shapes():
        if name.endswith("gamma"):
            out[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name == "final_logits_bias":
            out[name] = rng.standard_normal(shape).astype(np.float32)
        elif len(shape) == 2 and name not in ("src_positions", "tgt_positions"):  # matrices: unit gain
            out[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
        else:
            out[name] = (0.2 * rng.standard_normal(shape)).astype(np.float32)
    return out


def models(name, seed=0):
    """(float32 model, int8 model) holding the same float values."""
    cfg = config(name)
    params = random_parameters(cfg, seed)
    f32 = tformer.Transformer(cfg, seed=None)
    f32.set_parameters(params)
    i8 = tformer.Transformer(cfg, seed=None, dtype="int8")
    i8.set_parameters(params)
    return params, f32, i8


def matrices(cfg):
    """The names an int8 model stores as int8: Linear weights and token tables."""
    return [n for n, shape in cfg.to_core().parameter_shapes()
            if n.endswith(".weight") or n in ("src_embed", "tgt_embed", "out_proj")]


SRC = (np.array([[5, 6, 7, 9, 1], [8, 9, 3, 1, 0], [11, 4, 1, 0, 0]], np.int32), [5, 4, 3])
TGT = (np.array([[2, 5, 6, 7, 3], [2, 8, 9, 4, 0], [2, 12, 0, 0, 0]], np.int32), [5, 4, 2])


def forward(model, src=SRC, tgt=TGT):
    return model._core.forward(src[0], src[1], tgt[0], tgt[1])


# ---------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("name", list(CONFIGS))
def test_set_parameters_quantizes_matrices_by_the_rule(name):
    params, _, i8 = models(name)
    cfg = config(name)
    assert i8.dtype == "int8" and i8._core.compute_dtype == "float32"
    assert sorted(i8._core.int8_parameter_names()) == sorted(matrices(cfg))
    stored = i8._core.int8_parameters()
    assert sorted(stored) == sorted(matrices(cfg))
    for n, (q, scale) in stored.items():
        q_ref, s_ref = quantize_reference(params[n])
        assert q.dtype == np.int8 and scale.dtype == np.float32
        np.testing.assert_array_equal(q, q_ref, err_msg=n)
        np.testing.assert_array_equal(scale, s_ref, err_msg=n)
    # parameters(): float32 arrays, the matrices dequantized (float32 q * scale), the rest as set.
    got = i8.parameters()
    for n, value in params.items():
        assert got[n].dtype == np.float32
        if n in stored:
            q, scale = stored[n]
            np.testing.assert_array_equal(got[n], q.astype(np.float32) * scale[:, None], err_msg=n)
            assert i8._core.is_int8_parameter(n)
        else:
            np.testing.assert_array_equal(got[n], value, err_msg=n)
            assert not i8._core.is_int8_parameter(n)


def test_float_model_has_no_int8_parameters():
    _, f32, _ = models("marian")
    assert f32._core.int8_parameter_names() == [] and f32._core.int8_parameters() == {}
    assert f32._core.compute_dtype == "float32"
    assert not f32._core.is_int8_parameter("src_embed")


def test_zero_rows_quantize_to_zero_scale():
    cfg = config("marian")
    params = random_parameters(cfg)
    params["encoder.layers.0.ffn.fc1.weight"][3] = 0.0
    i8 = tformer.Transformer(cfg, seed=None, dtype="int8")
    i8.set_parameters(params)
    q, scale = i8._core.int8_parameters()["encoder.layers.0.ffn.fc1.weight"]
    assert scale[3] == 0.0 and not q[3].any()


@pytest.mark.parametrize("name", ["marian", "prenorm"])
def test_tied_matrices_are_one_int8_copy(name):
    """Aliases (tgt_embed of shared embeddings, out_proj of a tied head) read the owner's
    int8 values; setting the owner changes what every alias reads."""
    _, _, i8 = models(name)
    owner = "src_embed" if name == "marian" else "tgt_embed"
    stored = i8._core.int8_parameters()
    assert "out_proj" not in stored  # tied: not a parameter of its own
    assert i8._core.is_int8_parameter("out_proj")
    q, scale = stored[owner]
    q2 = (-q).astype(np.int8)
    i8._core.set_int8_parameters([(owner, q2, scale * 2)])
    after = i8.parameters()[owner]
    np.testing.assert_array_equal(after, q2.astype(np.float32) * (scale * 2)[:, None])
    # The output projection (tied) reads the new values too: the logits change.
    assert not np.array_equal(forward(i8), forward(models(name)[2]))


def test_set_int8_parameters_round_trip_is_bit_exact():
    _, _, i8 = models("bart")
    stored = i8._core.int8_parameters()
    copy = tformer.Transformer(config("bart"), seed=None, dtype="int8")
    copy._core.set_int8_parameters([(n, q, s) for n, (q, s) in stored.items()])
    floats = {n: v for n, v in i8.parameters().items() if n not in stored}
    copy.set_parameters(floats)
    assert copy._core.missing_parameters() == []
    for n, (q, s) in copy._core.int8_parameters().items():
        np.testing.assert_array_equal(q, stored[n][0])
        np.testing.assert_array_equal(s, stored[n][1])
    np.testing.assert_array_equal(forward(copy), forward(i8))
    # The model keeps its own copy: changing the caller's arrays afterwards changes nothing.
    q, s = stored["src_embed"]
    q[:] = 0
    s[:] = 0
    np.testing.assert_array_equal(forward(copy), forward(i8))


# ---------------------------------------------------------------------------- to()

@pytest.mark.parametrize("name", ["marian", "t5"])
def test_to_both_ways(name):
    params, f32, i8 = models(name)
    # float32 -> int8 quantizes exactly as set_parameters does.
    converted = f32.to(dtype="int8")
    assert converted.dtype == "int8" and f32.dtype == "float32"
    for n, (q, s) in converted._core.int8_parameters().items():
        np.testing.assert_array_equal(q, i8._core.int8_parameters()[n][0])
        np.testing.assert_array_equal(s, i8._core.int8_parameters()[n][1])
    np.testing.assert_array_equal(forward(converted), forward(i8))
    # int8 -> float32 dequantizes: the float model of the int8 model's values.
    back = i8.to(dtype="float32")
    assert back.dtype == "float32" and back._core.int8_parameter_names() == []
    got, want = back.parameters(), i8.parameters()
    for n in want:
        np.testing.assert_array_equal(got[n], want[n], err_msg=n)
    # ... and converting that again gives back the same int8 values (the rule is idempotent
    # on dequantized rows, up to a scale's last bit).
    again = back.to(dtype="int8")._core.int8_parameters()
    for n, (q, s) in i8._core.int8_parameters().items():
        np.testing.assert_array_equal(again[n][0], q, err_msg=n)
        np.testing.assert_allclose(again[n][1], s, rtol=2e-7, err_msg=n)


# ---------------------------------------------------------------------------- forward / decode

@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_matches_the_dequantized_float_model(name):
    """The int8 model computes what the float32 model of its dequantized matrices computes,
    except that each GEMM's input rows are quantized too. That is the same kind of error as
    quantizing the weights (a per-row 8-bit rounding, step amax / 127, of one operand of each
    GEMM), so its effect on the logits is bounded by the weight quantization's own: the float32
    model vs the dequantized one. Activation rows have more outliers than weight rows (ReLU /
    GELU outputs, gated products), hence a factor 2 of margin, and half the logits' spread as
    an absolute cap. A bias or scale dropped or applied twice moves logits by O(100%)."""
    _, f32, i8 = models(name)
    deq = i8.to(dtype="float32")
    a, b, c = forward(i8), forward(deq), forward(f32)
    valid = np.zeros(a.shape[:2], bool)
    for r, n in enumerate(TGT[1]):
        valid[r, :n] = True
    act, weight = np.abs(a - b)[valid], np.abs(b - c)[valid]
    spread = b[valid].std()
    assert act.max() > 0  # activations really are quantized
    assert act.max() <= 2 * weight.max() and act.mean() <= 2 * weight.mean(), (act.max(), weight.max())
    assert act.max() <= 0.5 * spread, (act.max(), spread)
    # The encoder alone, the same way.
    ea, eb, ec = i8._core.encode(*SRC)[0], deq._core.encode(*SRC)[0], f32._core.encode(*SRC)[0]
    assert np.abs(ea - eb).max() <= 2 * np.abs(eb - ec).max()


@pytest.mark.parametrize("name", ["marian", "t5"])
def test_a_row_alone_equals_the_row_in_a_batch(name):
    """int8 GEMMs quantize each activation row on its own: a sentence gives the same bits
    alone and inside a batch of sentences as long as itself."""
    _, _, i8 = models(name)
    src = np.array([[5, 6, 7, 9, 1], [8, 9, 3, 4, 1], [11, 4, 13, 14, 1]], np.int32)
    tgt = np.array([[2, 5, 6, 7, 3], [2, 8, 9, 4, 5], [2, 12, 17, 18, 19]], np.int32)
    batch = i8._core.forward(src, [5] * 3, tgt, [5] * 3)
    for r in range(3):
        alone = i8._core.forward(src[r:r + 1], [5], tgt[r:r + 1], [5])
        np.testing.assert_array_equal(alone[0], batch[r])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_decode_agrees_with_teacher_forced_forward(name):
    """The decode loop (KV caches, cross-attention K/V computed once, the output bias fused
    into the int8 GEMM) gives, step by step, the argmax and log-probabilities of the forward
    pass over the tokens it chose."""
    _, _, i8 = models(name)
    cfg = i8.config
    src = [[5, 6, 7, 9, 1], [8, 9, 3, 1]]
    results = i8.generate(src, beam_size=1, max_length=6, min_length=6, return_scores=True)
    start = cfg.decoder_start_id if cfg.decoder_start_id is not None else cfg.bos_id
    for s, res in zip(src, results):
        toks = res.tokens[0]
        assert len(toks) == 6
        tgt = np.array([[start] + toks[:-1]], np.int32)
        logits = i8._core.forward(np.array([s], np.int32), [len(s)], tgt, [len(toks)])[0].astype(np.float64)
        # min_length forbids EOS: the search takes the argmax and the log-softmax without it.
        logits[:, cfg.eos_id] = -np.inf
        top = logits.max(1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
        assert list(logp.argmax(1)) == toks
        chosen = logp[np.arange(len(toks)), toks]
        # A greedy score: the sum of the chosen tokens' log-probabilities.
        np.testing.assert_allclose(res.scores[0], chosen.sum(), rtol=1e-4, atol=1e-5)


def test_beam_search_runs_on_int8():
    _, _, i8 = models("marian")
    greedy = i8.generate([[5, 6, 7, 1]], beam_size=1, max_length=8)
    beam = i8.generate([[5, 6, 7, 1]], beam_size=3, num_hypotheses=3, max_length=8, return_scores=True)
    assert len(beam[0].tokens) == 3 and beam[0].scores == sorted(beam[0].scores, reverse=True)
    assert greedy[0].tokens[0]  # something was decoded


# ---------------------------------------------------------------------------- errors

def test_int8_on_cuda_is_refused():
    with pytest.raises(ValueError, match="int8 runs on the CPU only.*float32, float16 or bfloat16"):
        _core.Model(config("marian").to_core(), "cuda", "int8")
    _, _, i8 = models("marian")
    with pytest.raises(ValueError, match="int8 runs on the CPU only"):
        i8._core.to("cuda", "int8")


def test_unknown_and_unsupported_dtypes_name_the_accepted_ones():
    with pytest.raises(ValueError, match="expected one of float32, float16, bfloat16, int32, int8"):
        _core.Model(config("marian").to_core(), "cpu", "int4")
    with pytest.raises(ValueError, match=r"float32, float16 or bfloat16 \(or int8 on the CPU\), got int32"):
        _core.Model(config("marian").to_core(), "cpu", "int32")
    assert _core.canonical_dtype("int8") == "int8" and _core.canonical_dtype("i8") == "int8"


def test_training_an_int8_model_is_refused():
    _, _, i8 = models("marian")
    with pytest.raises(ValueError, match=r"int8 models are for inference: train in float32, then convert with "
                                         r"model.to\(dtype='int8'\)"):
        _core.TrainGraph(i8._core, set(), 0, "float32")
    with pytest.raises(ValueError, match="int8"):
        tformer.Trainer(i8)


def test_nan_values_are_refused_before_quantizing():
    cfg = config("marian")
    i8 = tformer.Transformer(cfg, dtype="int8")
    before = i8._core.int8_parameters()["encoder.layers.0.ffn.fc1.weight"]
    bad = np.zeros((cfg.encoder_ffn_dim, cfg.d_model), np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="'encoder.layers.0.ffn.fc1.weight' contains NaN"):
        i8.set_parameters({"encoder.layers.0.ffn.fc1.weight": bad})
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match="contains Inf"):
        i8._core.set_parameter("encoder.layers.0.ffn.fc1.weight", bad)
    after = i8._core.int8_parameters()["encoder.layers.0.ffn.fc1.weight"]
    np.testing.assert_array_equal(after[0], before[0])


@pytest.mark.parametrize("change, message", [
    (lambda n, q, s: ("nope", q, s), "unknown parameter 'nope'"),
    (lambda n, q, s: ("encoder.layers.0.ffn.fc1.bias", q, s), "'encoder.layers.0.ffn.fc1.bias' is not an int8 matrix"),
    (lambda n, q, s: (n, q.astype(np.int16), s), "expected an int8 array, got dtype int16"),
    (lambda n, q, s: (n, q.astype(np.uint8), s), "expected an int8 array, got dtype uint8"),
    (lambda n, q, s: (n, q, s.astype(np.float64)), "expected float32 scales, got dtype float64"),
    (lambda n, q, s: (n, q[:-1], s), r"expected int8 values of shape \(48, 32\), got \(47, 32\)"),
    (lambda n, q, s: (n, q, s[:-1]), r"expected scales of shape \(48,\), got \(47,\)"),
    (lambda n, q, s: (n, q, np.where(np.arange(len(s)) == 5, -1.0, s).astype(np.float32)),
     "scale of row 5 is -1; scales must be finite and >= 0"),
    (lambda n, q, s: (n, q, np.where(np.arange(len(s)) == 7, np.nan, s).astype(np.float32)),
     "scale of row 7 is nan"),
])
def test_bad_int8_values_are_refused(change, message):
    _, _, i8 = models("marian")
    name = "encoder.layers.0.ffn.fc1.weight"
    before = i8._core.int8_parameters()
    q, s = before[name]
    good = ("encoder.layers.0.ffn.fc2.weight", np.zeros_like(before["encoder.layers.0.ffn.fc2.weight"][0]),
            before["encoder.layers.0.ffn.fc2.weight"][1])
    with pytest.raises(ValueError, match=message):
        i8._core.set_int8_parameters([good, change(name, q, s)])
    # All or nothing: the good value before the bad one was not set either.
    after = i8._core.int8_parameters()
    for n in before:
        np.testing.assert_array_equal(after[n][0], before[n][0])


def test_int8_calls_on_a_float_model_are_refused():
    _, f32, _ = models("marian")
    q = np.zeros((48, 32), np.int8)
    s = np.ones(48, np.float32)
    with pytest.raises(ValueError, match="set_int8_parameters needs an int8 model, this one is float32"):
        f32._core.set_int8_parameters([("encoder.layers.0.ffn.fc1.weight", q, s)])
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        f32._core.is_int8_parameter("nope")
