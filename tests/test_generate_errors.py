"""Bad arguments to generate / generate_stream raise the documented exception whose
message names the problem (docs/DECODING.md, "Errors"): input errors as for forward,
option values -> ValueError naming the option, wrong types -> TypeError."""

import numpy as np
import pytest

import tf_testlib as lib

NAME = "bart_gen"  # vocab 150, max_position_embeddings 48, eos 2


@pytest.fixture(scope="module")
def ckpt(gen_zoo):
    return gen_zoo(NAME)


@pytest.fixture(scope="module")
def model(ckpt):
    return ckpt.model("cpu")


@pytest.fixture(scope="module")
def src():
    return lib.gen_sources(NAME, 3, seed=9, min_len=3, max_len=6)


# ---- source ids (as for forward) --------------------------------------------------------

def test_empty_batch(model):
    with pytest.raises(ValueError, match=r"(?i)empty|batch"):
        model.generate([], beam_size=1, max_length=5)
    with pytest.raises(ValueError, match=r"(?i)empty|batch"):
        model.generate(np.zeros((0, 3), dtype=np.int32), beam_size=1, max_length=5)


def test_empty_source(model, src):
    with pytest.raises(ValueError, match=r"(?i)empty|length|zero"):
        model.generate([src[0], []], beam_size=1, max_length=5)
    with pytest.raises(ValueError, match=r"(?i)empty|length|zero"):
        model.generate(np.zeros((2, 0), dtype=np.int32), beam_size=1, max_length=5)


@pytest.mark.parametrize("bad_id", [-1, 150, 10_000])
def test_source_id_out_of_vocab(model, src, bad_id):
    bad = [list(s) for s in src]
    bad[1][0] = bad_id
    with pytest.raises(ValueError) as excinfo:
        model.generate(bad, beam_size=2, max_length=5)
    msg = str(excinfo.value)
    assert str(bad_id) in msg and "150" in msg, msg


@pytest.mark.parametrize("form", ["list", "array"])
def test_float_ids(model, src, form):
    bad = ([[float(t) + 0.5 for t in s] for s in src] if form == "list"
           else np.array([s[:3] for s in src], dtype=np.float32))
    with pytest.raises((TypeError, ValueError), match=r"(?i)int|float|dtype"):
        model.generate(bad, beam_size=1, max_length=5)


def test_source_longer_than_positions(model, ckpt):
    n = ckpt.ref.config.max_position_embeddings
    long_src, _ = lib.make_batch(ckpt.base, [n + 1], [1], seed=3)
    with pytest.raises(ValueError, match=r"(?i)position|length|long") as excinfo:
        model.generate(long_src, beam_size=1, max_length=5)
    assert str(n) in str(excinfo.value)


# ---- option values -------------------------------------------------------------------

BAD_OPTIONS = [
    ("beam_size", dict(beam_size=0)),
    ("beam_size", dict(beam_size=-2)),
    ("num_hypotheses", dict(beam_size=4, num_hypotheses=0)),
    ("num_hypotheses", dict(beam_size=4, num_hypotheses=5)),
    ("num_hypotheses", dict(beam_size=1, num_hypotheses=2)),
    ("max_length", dict(max_length=0)),
    ("max_length", dict(max_length=-3)),
    ("min_length", dict(max_length=5, min_length=-1)),
    ("min_length", dict(max_length=5, min_length=6)),
    ("sampling_topk", dict(do_sample=True, sampling_topk=-1)),
    ("sampling_topp", dict(do_sample=True, sampling_topp=0.0)),
    ("sampling_topp", dict(do_sample=True, sampling_topp=1.5)),
    ("sampling_topp", dict(do_sample=True, sampling_topp=-0.2)),
    ("sampling_temperature", dict(do_sample=True, sampling_temperature=0.0)),
    ("sampling_temperature", dict(do_sample=True, sampling_temperature=-1.0)),
    ("repetition_penalty", dict(repetition_penalty=0.0)),
    ("repetition_penalty", dict(repetition_penalty=-1.3)),
]


@pytest.mark.parametrize("option, kwargs", BAD_OPTIONS,
                         ids=[f"{k}={v}" for _, kw in BAD_OPTIONS for k, v in [list(kw.items())[-1]]])
def test_bad_option_value(model, src, option, kwargs):
    kwargs = {"max_length": 5, **kwargs}
    with pytest.raises(ValueError, match=option):
        model.generate(src, **kwargs)


def test_num_hypotheses_message_names_beam_size(model, src):
    with pytest.raises(ValueError, match="num_hypotheses") as excinfo:
        model.generate(src, beam_size=3, num_hypotheses=4, max_length=5)
    assert "3" in str(excinfo.value), str(excinfo.value)


def test_max_length_beyond_positions(model, ckpt, src):
    n = ckpt.ref.config.max_position_embeddings
    for max_length in (n + 1, 10 * n):
        with pytest.raises(ValueError, match="max_length") as excinfo:
            model.generate(src, beam_size=1, max_length=max_length)
        assert str(n) in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("name", ["marian_gen", "bart_gen"])
def test_max_length_at_positions_limit(gen_zoo, name):
    """max_length == max_position_embeddings is allowed and matches transformers (the last
    generated token is never fed back, so positions 0..n-1 suffice)."""
    ckpt = gen_zoo(name)
    n = ckpt.ref.config.max_position_embeddings
    src = lib.gen_sources(name, 6, seed=12)
    options = dict(beam_size=1, max_length=n, min_length=n - 2)
    expected = ckpt.hf(src, **options)
    results = ckpt.model("cpu").generate(src, **options)
    assert [r.tokens for r in results] == expected.tokens
    assert max(len(r.tokens[0]) for r in results) >= n - 1


# ---- target_prefix -----------------------------------------------------------------------

def test_target_prefix_wrong_count(model, src):
    with pytest.raises(ValueError, match="target_prefix") as excinfo:
        model.generate(src, target_prefix=[[7]] * (len(src) - 1), beam_size=2, max_length=5)
    assert str(len(src)) in str(excinfo.value)
    with pytest.raises(ValueError, match="target_prefix"):
        model.generate(src, target_prefix=[[7]] * (len(src) + 1), beam_size=2, max_length=5)


@pytest.mark.parametrize("bad_id", [-1, 150])
def test_target_prefix_out_of_vocab(model, src, bad_id):
    with pytest.raises(ValueError, match="target_prefix") as excinfo:
        model.generate(src, target_prefix=[[7], [bad_id, 9], [8]], beam_size=2, max_length=5)
    assert str(bad_id) in str(excinfo.value)


def test_target_prefix_longer_than_max_length(model, src):
    with pytest.raises(ValueError, match="target_prefix|max_length"):
        model.generate(src, target_prefix=[[7, 8, 9, 10]] * len(src), beam_size=2, max_length=3)


# ---- types -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(beam_size="4"), dict(beam_size=2.5), dict(max_length="5"),
                                    dict(num_hypotheses=1.0), dict(seed="7", do_sample=True)],
                         ids=["beam_size=str", "beam_size=float", "max_length=str",
                              "num_hypotheses=float", "seed=str"])
def test_wrong_option_type(model, src, kwargs):
    kwargs = {"max_length": 5, "beam_size": 2, **kwargs}
    with pytest.raises(TypeError):
        model.generate(src, **kwargs)


def test_unknown_option(model, src):
    """A misspelt option must not be ignored silently (Python's TypeError for an
    unexpected keyword argument)."""
    with pytest.raises(TypeError, match="beam_sise"):
        model.generate(src, beam_sise=4, max_length=5)


# ---- generate_stream ---------------------------------------------------------------------

def test_stream_rejects_beam_search(model, src):
    with pytest.raises(ValueError, match="beam_size"):
        list(model.generate_stream(src[0], beam_size=4, max_length=5))


def test_stream_rejects_several_sources(model, src):
    with pytest.raises(ValueError, match=r"(?i)one|single|1|batch"):
        list(model.generate_stream(src, beam_size=1, max_length=5))


def test_stream_checks_options(model, src):
    with pytest.raises(ValueError, match="max_length"):
        list(model.generate_stream(src[0], beam_size=1, max_length=0))


# ---- the model still works after errors ------------------------------------------------

def test_model_usable_after_errors(model, ckpt, src):
    for kwargs in (dict(beam_size=0), dict(max_length=0), dict(num_hypotheses=9)):
        with pytest.raises(ValueError):
            model.generate(src, **kwargs)
    expected = ckpt.hf(src, beam_size=2, max_length=8)
    assert [r.tokens for r in model.generate(src, beam_size=2, max_length=8)] == expected.tokens
