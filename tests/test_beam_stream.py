"""Beam-search streaming in the C++ search (options.on_token with beam_size > 1): a token is
passed on once every live beam of its source and every finished hypothesis the source keeps
agree on it, so the streamed tokens are always a prefix of the final best hypothesis; the
rest of it follows when the source ends (final EOS excluded, as greedy streaming).

The reference is the search's own final result (tokens[0]) and the same call without
streaming: streaming must not change any result."""

import numpy as np
import pytest
import tformer
from tformer._native import _core
from tformer.generate import build_options
from tformer.inputs import prepare_ids

import tf_testlib as lib

GEN_NAMES = ["marian_gen", "bart_gen", "m2m_100_gen"]
SEARCHES = {
    "beam4": dict(beam_size=4),
    "beam4_lp0.6_nbest3": dict(beam_size=4, length_penalty=0.6, num_hypotheses=3),
    "beam4_lp2": dict(beam_size=4, length_penalty=2.0),
    "beam4_min4": dict(beam_size=4, min_length=4),
    "beam4_early_stopping": dict(beam_size=4, early_stopping=True),
    "beam2_max5": dict(beam_size=2, max_length=5),
    "beam8": dict(beam_size=8),
    "beam3_sampling": dict(beam_size=3, do_sample=True, seed=11),
}
MAX_LEN = 12


def run_core(model, src, cancel=None, on_token=None, **options):
    """model._core.generate on src as given (no reordering); on_token(source, token) when given."""
    ids, lengths = prepare_ids(src, "src_ids")
    opts = build_options(model, len(src), **options)
    if cancel is not None:
        opts.set_cancel(cancel)
    if on_token is not None:
        opts.set_on_token(on_token)
    return model._core.generate(ids, lengths, opts)


def streamed_run(model, src, **options):
    streams = [[] for _ in src]
    results = run_core(model, src, on_token=lambda s, t: streams[s].append(t), **options)
    return streams, results


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("name", GEN_NAMES)
def test_streamed_tokens_are_the_best_hypothesis(gen_zoo, name, search):
    model = gen_zoo(name).model("cpu")
    src = lib.gen_sources(name, 10, seed=5)
    options = {"max_length": MAX_LEN, "return_scores": True, **SEARCHES[search]}
    streams, results = streamed_run(model, src, **options)
    plain = run_core(model, src, **options)
    for i, (s, r, p) in enumerate(zip(streams, results, plain)):
        assert s == list(r.tokens[0]), f"{name} {search} source {i}: streamed {s}, best {list(r.tokens[0])}"
        assert [list(t) for t in r.tokens] == [list(t) for t in p.tokens], f"{name} {search} source {i}"
        assert list(r.scores) == list(p.scores), f"{name} {search} source {i}"


def test_a_forced_prefix_streams_at_once(gen_zoo):
    """target_prefix forces every beam's first tokens: the first one is streamed after the
    first step. Its callback cancels the call, so the search stops early: had the token come
    at the end, the result would not be cancelled."""
    model = gen_zoo("marian_gen").model("cpu")
    src = lib.gen_sources("marian_gen", 3, seed=2)
    prefix = [[7, 8, 9], [10, 11, 12], [13, 14, 15]]
    full = run_core(model, src, beam_size=4, max_length=MAX_LEN, min_length=MAX_LEN - 1, target_prefix=prefix)
    assert all(list(r.tokens[0][:3]) == p for r, p in zip(full, prefix))
    token = tformer.CancelToken()
    streams = [[] for _ in src]

    def on_token(source, t):
        streams[source].append(t)
        token.cancel()

    results = run_core(model, src, cancel=[token], on_token=on_token, beam_size=4, max_length=MAX_LEN,
                       min_length=MAX_LEN - 1, target_prefix=prefix)
    for s, r, p in zip(streams, results, prefix):
        assert r.cancelled
        assert s == list(r.tokens[0])
        assert s == p[:1], s  # cancelled after the first step: the forced first token


def test_beams_that_agree_early_stream_before_the_end(gen_zoo):
    """Without forcing: each source's token is cancelled by its first streamed token. The
    sources whose beams agreed on a token before the search ended stop there (cancelled);
    streaming equals the result's best hypothesis either way."""
    name = "marian_gen"
    model = gen_zoo(name).model("cpu")
    src = lib.gen_sources(name, 16, seed=9)
    options = dict(beam_size=4, max_length=16)
    full = run_core(model, src, **options)
    tokens = [tformer.CancelToken() for _ in src]
    streams = [[] for _ in src]

    def on_token(source, t):
        streams[source].append(t)
        tokens[source].cancel()

    results = run_core(model, src, cancel=tokens, on_token=on_token, **options)
    early = [i for i, r in enumerate(results) if r.cancelled]
    assert len(early) >= 3, f"only sources {early} streamed before the end"
    for i, (s, r, f) in enumerate(zip(streams, results, full)):
        assert s == list(r.tokens[0]), f"source {i}"
        if r.cancelled:
            # The first token came while all beams agreed on it: the uncancelled run, the
            # same search up to there, starts with it too. (The rest is the cancelled
            # result's best beam, which need not be the uncancelled best.)
            assert s[0] == f.tokens[0][0], f"source {i}: {s} vs {list(f.tokens[0])}"
        else:
            assert s == list(f.tokens[0]), f"source {i}"


def test_random_model_many_sources(tmp_path):
    """A tformer-initialized model (no EOS shaping): long hypotheses, beams that disagree."""
    cfg = tformer.TransformerConfig(src_vocab_size=48, tgt_vocab_size=48, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_positions=64)
    model = tformer.Transformer(cfg, seed=3)
    rng = np.random.default_rng(0)
    src = [[int(x) for x in rng.integers(3, 48, n)] + [cfg.eos_id] for n in rng.integers(1, 12, 12)]
    for options in (dict(beam_size=5, max_length=20), dict(beam_size=3, max_length=20, length_penalty=0.5,
                                                           num_hypotheses=2, repetition_penalty=1.3)):
        streams, results = streamed_run(model, src, **options)
        for i, (s, r) in enumerate(zip(streams, results)):
            assert s == list(r.tokens[0]), f"{options} source {i}"
