"""tformer.CancelToken and generate(cancel=...): the C++ search checks the tokens before the
encoder and once per step per source. A cancelled call returns early with `.cancelled`
results holding what they had; cancelling some sources leaves the others' results exactly
those of an uncancelled run; a token's timeout cancels by itself."""

import threading
import time

import pytest
import tformer

SRC = [[5, 6, 7, 8, 1], [9, 10, 1], [11, 12, 13, 1], [14, 1]]
SEARCHES = {"greedy": dict(beam_size=1), "beam": dict(beam_size=4), "sampling": dict(beam_size=1, do_sample=True, seed=3),
            "beam_sampling": dict(beam_size=3, do_sample=True, seed=5)}
LONG = 2000  # tokens forced (min_length = max_length): seconds of decoding for this model


@pytest.fixture(scope="module")
def model():
    cfg = tformer.TransformerConfig(src_vocab_size=64, tgt_vocab_size=64, d_model=32, encoder_layers=1,
                                    decoder_layers=1, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_positions=LONG + 8)
    return tformer.Transformer(cfg, seed=0)


@pytest.mark.parametrize("search", SEARCHES)
def test_cancel_from_another_thread_stops_a_long_generate(model, search):
    token = tformer.CancelToken()
    threading.Timer(0.1, token.cancel).start()
    results = model.generate(SRC, max_length=LONG, min_length=LONG, cancel=token, **SEARCHES[search])
    assert token.cancelled
    assert all(r.cancelled for r in results)
    # Stopped part way (how far depends on the machine's speed): no hypothesis reached the
    # forced length, which uncancelled they all do.
    assert all(len(r.tokens[0]) < LONG for r in results), [len(r.tokens[0]) for r in results]


@pytest.mark.parametrize("search", SEARCHES)
def test_cancelled_sources_leave_the_others_identical(model, search):
    opts = dict(max_length=24, return_scores=True, num_hypotheses=2 if SEARCHES[search]["beam_size"] > 1 else 1,
                **SEARCHES[search])
    expected = model.generate(SRC, **opts)
    tokens = [tformer.CancelToken() for _ in SRC]
    tokens[1].cancel()
    tokens[3].cancel()
    got = model.generate(SRC, cancel=tokens, max_batch_size=3, **opts)  # two generate calls
    for i, (e, g) in enumerate(zip(expected, got)):
        if i in (1, 3):
            assert g.cancelled and g.tokens == [[]] * opts["num_hypotheses"], g
        else:
            assert not g.cancelled and not e.cancelled
            assert (g.tokens, g.scores) == (e.tokens, e.scores), i


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_a_token_past_its_deadline_cancels(model, search):
    expired = tformer.CancelToken(timeout=0)
    assert expired.cancelled and expired.remaining == 0.0
    results = model.generate(SRC, max_length=LONG, min_length=LONG, cancel=expired, return_scores=True,
                             **SEARCHES[search])
    assert all(r.cancelled and r.tokens == [[]] for r in results)  # never encoded, nothing decoded

    soon = tformer.CancelToken(timeout=0.1)
    assert not soon.cancelled and 0 < soon.remaining <= 0.1
    results = model.generate(SRC, max_length=LONG, min_length=LONG, cancel=soon, **SEARCHES[search])
    assert soon.cancelled and all(r.cancelled and len(r.tokens[0]) < LONG for r in results)


def test_an_uncancelled_token_changes_nothing(model):
    token = tformer.CancelToken(timeout=3600)
    for opts in SEARCHES.values():
        assert [r.tokens for r in model.generate(SRC, max_length=12, cancel=token, **opts)] == \
            [r.tokens for r in model.generate(SRC, max_length=12, **opts)]
    assert not token.cancelled and tformer.CancelToken().remaining is None


def test_generate_stream_stops_when_cancelled(model):
    token = tformer.CancelToken()
    got = []
    for t in model.generate_stream(SRC[0], max_length=LONG, min_length=LONG, cancel=token):
        got.append(t)
        if len(got) == 5:
            token.cancel()
    assert 5 <= len(got) < LONG


def test_closing_a_stream_early_stops_its_decoding(model):
    threads = threading.active_count()
    stream = model.generate_stream(SRC[0], max_length=LONG, min_length=LONG)
    assert len([next(stream) for _ in range(3)]) == 3
    assert threading.active_count() == threads + 1  # the stream's worker
    stream.close()
    end = time.time() + 2.0  # the rest of the 2000 tokens would take several seconds
    while threading.active_count() > threads:
        assert time.time() < end, "the stream's worker still decodes after close()"
        time.sleep(0.01)


def test_bad_cancel_arguments(model):
    with pytest.raises(TypeError, match="cancel must be a tformer.CancelToken or a list of them, got str"):
        model.generate(SRC, max_length=4, cancel="now")
    with pytest.raises(ValueError, match="cancel has 2 tokens for 4 sources"):
        model.generate(SRC, max_length=4, cancel=[tformer.CancelToken()] * 2)
    with pytest.raises(TypeError, match=r"cancel\[1\] must be a tformer.CancelToken, got NoneType"):
        model.generate(SRC, max_length=4, cancel=[tformer.CancelToken(), None, tformer.CancelToken(),
                                                  tformer.CancelToken()])
    for bad in (-1, float("nan"), -0.5):
        with pytest.raises(ValueError, match="timeout must be None or a number of seconds >= 0"):
            tformer.CancelToken(bad)
    for bad in ("1", True, [1]):
        with pytest.raises(TypeError, match="timeout must be None or a number of seconds, got"):
            tformer.CancelToken(bad)
    assert not tformer.CancelToken(float("inf")).cancelled  # no deadline
