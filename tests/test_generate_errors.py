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

def test_stream_beam_search_gives_the_best_hypothesis(model, src):
    """generate_stream with beams (the agreed prefix, then the rest) ends as generate's best."""
    streamed = list(model.generate_stream(src[0], beam_size=4, max_length=5))
    assert streamed == model.generate([src[0]], beam_size=4, max_length=5)[0].tokens[0]
    with pytest.raises(ValueError, match="beam_size"):
        list(model.generate_stream(src[0], beam_size=0, max_length=5))


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


# ---- ids fed to the embedding while decoding (issue 13, item 1) --------------------------

# Run in a child: on a build without the check, the first call segfaults.
_PAD_CHILD = r"""
import tformer
from tformer._native import _core

def tiny(pad_id=0, position_offset=0):
    cfg = tformer.TransformerConfig(src_vocab_size=24, tgt_vocab_size=24, d_model=16, encoder_layers=1,
                                    decoder_layers=1, encoder_heads=2, decoder_heads=2, encoder_ffn_dim=16,
                                    decoder_ffn_dim=16, max_positions=32, pad_id=pad_id, eos_id=1, bos_id=2,
                                    position_offset=position_offset)
    return tformer.Transformer(cfg, seed=0)

def outcome(call):
    try:
        return repr([r.tokens for r in call()])
    except Exception as e:
        return f"{type(e).__name__}: {e}"

model = tiny()
src = [[3, 4, 1], [5, 1]]
# Row 0 ends at once (its prefix is EOS), row 1 goes on: from step 1 row 0 is fed the padding.
kw = dict(max_length=6, target_prefix=[[1], [3, 4]], seed=0)
for pad in (10**9, 2**31 - 1, 24, -10**8, -2):
    for mode in (dict(beam_size=1), dict(beam_size=1, do_sample=True), dict(beam_size=3)):
        print("pad", pad, outcome(lambda: model.generate(src, pad_token_id=pad, **mode, **kw)))
for unset in (None, -1):
    print("unset", outcome(lambda: model.generate(src, pad_token_id=unset, beam_size=1, **kw)))
print("given0", outcome(lambda: model.generate(src, pad_token_id=0, beam_size=1, **kw)))
# The core's own check, for callers of _core that skip the Python one.
opts = _core.GenerationOptions()
opts.beam_size, opts.max_length, opts.eos_token_ids, opts.decoder_start_token_id = 1, 6, [1], 2
opts.target_prefix, opts.pad_token_id = [[1], [3, 4]], 10**6
import numpy as np
print("core", outcome(lambda: model._core.generate(np.array([[3, 4, 1], [5, 1, 0]], np.int32), [3, 2], opts)))
# A model whose own pad id is outside its vocabulary.
def bad_model_pad():
    return tiny(pad_id=10**6).generate(src, beam_size=1, **kw)
print("model_pad", outcome(bad_model_pad))
"""


def _child_lines(code):
    """stdout lines of `code` run by a child Python: a segfault fails the test, not pytest."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-2000:]}"
    return proc.stdout.splitlines()


def test_pad_token_id_outside_vocab_is_refused():
    """pad_token_id outside [0, vocab) used to reach the embedding of finished rows (a
    segfault); now a ValueError naming it and the range. None / -1 keep meaning the
    model's pad id."""
    lines = _child_lines(_PAD_CHILD)
    pads = [l for l in lines if l.startswith("pad ")]
    assert len(pads) == 15, lines
    for line in pads:
        assert "ValueError: pad_token_id" in line and "[0, 24)" in line, line
    unset = [l.split(" ", 1)[1] for l in lines if l.startswith("unset ")]
    given0 = next(l.split(" ", 1)[1] for l in lines if l.startswith("given0 "))
    assert unset == [given0, given0] and given0.startswith("[[[]], [[3, 4"), lines
    core = next(l for l in lines if l.startswith("core "))
    assert "ValueError: pad_token_id 1000000 is outside the target vocabulary [0, 24)" in core, core
    model_pad = next(l for l in lines if l.startswith("model_pad "))
    assert "ValueError" in model_pad and "pad_id" in model_pad and "1000000" in model_pad, model_pad


@pytest.mark.parametrize("key, value", [("forced_bos_token_id", -2), ("forced_eos_token_id", -10**8),
                                        ("forced_bos_token_id", 2**31), ("decoder_start_token_id", -1),
                                        ("decoder_start_token_id", 2**63)])
def test_other_decoding_ids_outside_vocab(model, src, key, value):
    with pytest.raises(ValueError, match=key) as excinfo:
        model.generate(src, beam_size=1, max_length=4, **{key: value})
    assert "[0, 150)" in str(excinfo.value) and str(value) in str(excinfo.value)


# ---- options at the edges of their C++ types (issue 13, item 6) ---------------------------

def test_max_length_at_int64_max_is_refused():
    """The positions check computed offset + max_length - 1, which overflowed for
    max_length = 2**63 - 1 with BART's offset 2 and let the decode run off the table (a
    segfault)."""
    code = _PAD_CHILD.split("model = tiny()")[0] + (
        "print(outcome(lambda: tiny(position_offset=2).generate([[3, 4, 1]], beam_size=1, max_length=2**63 - 1)))")
    line = _child_lines(code)[-1]
    assert line.startswith("ValueError: max_length 9223372036854775807") and "positions" in line, line

INTERNALS = ("pybind11", "object at 0x", "incompatible function arguments", "Invoked with", "_core.")

EDGE_OPTIONS = [
    # (option, value, exception, text the message must show besides the option's name)
    ("seed", 2**64, ValueError, "2**64 - 1"),
    ("seed", -1, ValueError, "2**64 - 1"),
    ("min_length", 2**64, ValueError, "2**63 - 1"),
    ("max_length", 2**63, ValueError, "2**63 - 1"),
    ("beam_size", 2**40, ValueError, "1024"),
    ("beam_size", 2**31 - 1, ValueError, "1024"),
    ("num_hypotheses", 2**63, ValueError, "2**63 - 1"),
    ("sampling_topk", 2**64, ValueError, "2**63 - 1"),
    ("no_repeat_ngram_size", -2**63 - 1, ValueError, "0"),
    ("max_batch_size", 2**70, ValueError, "2**63 - 1"),
    ("eos_token_id", [2, 2**64], ValueError, "[0, 150)"),
    ("target_prefix", [[7], [2**40], [8]], ValueError, "[0, 150)"),
    ("bad_words_ids", [[2**64 - 1]], ValueError, "[0, 150)"),
    ("length_penalty", float("nan"), ValueError, "finite"),
    ("sampling_temperature", float("inf"), ValueError, "finite"),
    ("repetition_penalty", 1e39, ValueError, "float32"),
    ("length_penalty", -float("inf"), ValueError, "finite"),
    ("beam_size", 2.0, TypeError, "integer"),
    ("seed", True, TypeError, "integer"),
    ("do_sample", 1, TypeError, "True or False"),
    ("early_stopping", "no", TypeError, "True or False"),
    ("return_scores", None, TypeError, "True or False"),
    ("pad_token_id", object(), TypeError, "integer"),
]


@pytest.mark.parametrize("option, value, error, text", EDGE_OPTIONS,
                         ids=[f"{o}={v!r}"[:40] if not isinstance(v, object) or isinstance(v, (int, float, str, list,
                              type(None))) else f"{o}=object" for o, v, _, _ in EDGE_OPTIONS])
def test_option_at_type_edge_is_named(model, src, option, value, error, text):
    """Values beyond an option's C++ type used to reach pybind11, whose TypeError shows
    internal type names and an object address; now each names the option and its range."""
    kwargs = {"beam_size": 2, "max_length": 4, option: value}
    with pytest.raises(error) as excinfo:
        model.generate(src, **kwargs)
    message = str(excinfo.value)
    assert option in message and text in message, message
    assert not any(s in message for s in INTERNALS), message


def test_option_edges_that_are_valid(model, src):
    """The largest seed and sampling_topk decode (deterministically), and -1 keeps meaning
    "none" for the forced tokens."""
    for seed in (2**64 - 1, 2**63):
        a = model.generate(src, beam_size=1, max_length=5, do_sample=True, seed=seed)
        b = model.generate(src, beam_size=1, max_length=5, do_sample=True, seed=np.uint64(seed))
        assert [r.tokens for r in a] == [r.tokens for r in b]
    plain = model.generate(src, beam_size=2, max_length=5, forced_bos_token_id=None, forced_eos_token_id=None)
    same = model.generate(src, beam_size=2, max_length=5, sampling_topk=2**63 - 1, no_repeat_ngram_size=2**63 - 1,
                          forced_bos_token_id=-1, forced_eos_token_id=np.int64(-1))
    assert [r.tokens for r in same] == [r.tokens for r in plain]


@pytest.mark.parametrize("ids, shown", [
    ([[5, 6, 2**64]], "18446744073709551616"),
    ([[5, 6], [7, -2**63 - 1]], "-9223372036854775809"),
    ([np.array([5, 2**64 - 1], dtype=np.uint64)], "18446744073709551615"),
    (np.array([[5, 2**63]], dtype=np.uint64), "9223372036854775808"),
], ids=["list-2**64", "list-below-int64", "row-uint64-max", "array-uint64"])
def test_source_ids_beyond_int64_are_named(model, ids, shown):
    """Ids past int64 used to raise NumPy's OverflowError, and a uint64 row wrapped to -1."""
    with pytest.raises(ValueError, match="src_ids") as excinfo:
        model.generate(ids, beam_size=1, max_length=4)
    assert shown in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("content, names", [({"max_length": "abc"}, "max_length"),
                                            ({"max_new_tokens": 2**64 + 0.5}, "max_new_tokens"),
                                            ({"min_length": float("nan")}, "min_length"),
                                            ([1, 2], "JSON object")])
def test_translator_directory_lengths_are_named(tmp_path, content, names):
    """A model directory's generation_config.json with a bad length names the file and the key."""
    import json

    from tformer.translator import generation_defaults

    (tmp_path / "generation_config.json").write_text(json.dumps(content))
    with pytest.raises((ValueError, TypeError)) as excinfo:
        generation_defaults(tmp_path)
    assert names in str(excinfo.value) and "generation_config.json" in str(excinfo.value), str(excinfo.value)
