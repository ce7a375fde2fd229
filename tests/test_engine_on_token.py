"""tformer.Engine.submit(on_token=fn(source, token)): the tokens of every source of one request
as they are decided (what `tformer serve` streams for a request of several texts), numbered in
the caller's order although the engine runs the sources longest first. Checked against
`model.generate` of the same request alone: each source's streamed tokens are its best
hypothesis, final EOS excluded."""

import collections
import threading

import pytest
import tformer

# Lengths 3, 7, 2, 5: the engine's order (longest first) is not the input order.
SRC = [[9, 10, 1], [11, 12, 13, 14, 15, 16, 1], [14, 1], [5, 6, 7, 8, 1]]
EOS = 1


@pytest.fixture(scope="module")
def model():
    cfg = tformer.TransformerConfig(src_vocab_size=64, tgt_vocab_size=64, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_positions=64, eos_id=EOS)
    return tformer.Transformer(cfg, seed=3)


@pytest.mark.parametrize("options", [dict(beam_size=1), dict(beam_size=3, num_hypotheses=2),
                                     dict(beam_size=1, do_sample=True, seed=7, sampling_topk=8)])
def test_on_token_streams_each_source_in_input_order(model, options):
    streamed, threads = collections.defaultdict(list), set()

    def on_token(source, token):
        streamed[source].append(token)
        threads.add(threading.get_ident())

    with tformer.Engine(model, max_rows=32) as engine:
        got = engine.submit(SRC, on_token=on_token, max_length=12, **options).result(timeout=60)
    expected = model.generate(SRC, max_length=12, **options)
    assert [r.tokens for r in got] == [r.tokens for r in expected]
    assert set(streamed) <= set(range(len(SRC))) and sum(map(len, streamed.values())) > len(SRC)
    for i, r in enumerate(expected):  # (a source whose best is EOS alone streams nothing)
        best = list(r.tokens[0])
        assert streamed.get(i, []) == (best[:-1] if best and best[-1] == EOS else best), i
    assert threading.get_ident() not in threads  # the engine's thread, not the caller's


def test_on_token_must_be_callable(model):
    with tformer.Engine(model) as engine:
        with pytest.raises(TypeError, match="on_token must be a function \\(source index, token id\\), got int"):
            engine.submit(SRC, on_token=3)
