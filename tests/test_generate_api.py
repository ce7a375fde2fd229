"""The Python surface of decoding (docs/DECODING.md): result types, defaults, batching
(independence, max_batch_size, order), input forms, generate_stream, and several
threads decoding on one model."""

import threading

import numpy as np
import pytest

import tf_testlib as lib

GEN_NAMES = ["marian_gen", "bart_gen", "m2m_100_gen"]
MAX_LEN = 12
# The same source alone or in a batch: the arithmetic may differ by rounding only.
BATCH_TOL = 1e-5


def _sources(name, n=12, seed=3):
    return lib.gen_sources(name, n, seed=seed)


def _assert_same_results(actual, expected, what, tol=BATCH_TOL):
    assert len(actual) == len(expected), what
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.tokens == e.tokens, f"{what}: source {i}: {a.tokens} != {e.tokens}"
        assert len(a.scores) == len(e.scores), what
        for x, y in zip(a.scores, e.scores):
            assert abs(x - y) <= tol * max(1.0, abs(y)), f"{what}: source {i}: {a.scores} != {e.scores}"


# ---- result types and defaults ------------------------------------------------------------

def test_result_types(gen_zoo, device):
    ckpt = gen_zoo("bart_gen")
    src = _sources("bart_gen", 5)
    results = ckpt.model(device).generate(src, beam_size=3, num_hypotheses=2, max_length=MAX_LEN,
                                          return_scores=True, return_attention=True)
    assert isinstance(results, list) and len(results) == 5
    for r in results:
        assert type(r).__name__ == "GenerationResult"
        assert isinstance(r.tokens, list) and len(r.tokens) == 2
        for hyp in r.tokens:
            assert isinstance(hyp, list)
            assert all(type(t) is int for t in hyp), [type(t) for t in hyp]
        assert isinstance(r.scores, list) and len(r.scores) == 2
        assert all(isinstance(s, float) for s in r.scores)
        assert isinstance(r.attention, list) and len(r.attention) == 2
        assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in r.attention)


def test_defaults_are_beam4_one_hypothesis(gen_zoo, device):
    """beam_size 4, num_hypotheses 1, length_penalty 1.0 by default."""
    ckpt = gen_zoo("m2m_100_gen")
    src = _sources("m2m_100_gen")
    model = ckpt.model(device)
    default = model.generate(src, max_length=MAX_LEN, return_scores=True)
    explicit = model.generate(src, beam_size=4, num_hypotheses=1, length_penalty=1.0,
                              max_length=MAX_LEN, return_scores=True)
    _assert_same_results(default, explicit, "defaults")
    expected = ckpt.hf(src, beam_size=4, max_length=MAX_LEN)
    assert [r.tokens for r in default] == expected.tokens
    assert expected.tokens != ckpt.hf(src, beam_size=1, max_length=MAX_LEN).tokens


# ---- batching --------------------------------------------------------------------------

@pytest.mark.parametrize("options", [dict(beam_size=1), dict(beam_size=4, num_hypotheses=2)],
                         ids=["greedy", "beam4"])
@pytest.mark.parametrize("name", GEN_NAMES)
def test_batch_independence(gen_zoo, device, name, options):
    """A source gives the same result alone and inside a batch of other lengths."""
    model = gen_zoo(name).model(device)
    src = _sources(name)
    batched = model.generate(src, max_length=MAX_LEN, return_scores=True, **options)
    alone = [model.generate([s], max_length=MAX_LEN, return_scores=True, **options)[0]
             for s in src]
    _assert_same_results(batched, alone, f"{name} batch vs alone")


@pytest.mark.parametrize("options", [dict(beam_size=1), dict(beam_size=4, num_hypotheses=2)],
                         ids=["greedy", "beam4"])
@pytest.mark.parametrize("name", GEN_NAMES)
def test_max_batch_size_split(gen_zoo, device, name, options):
    model = gen_zoo(name).model(device)
    src = _sources(name, 11)
    whole = model.generate(src, max_length=MAX_LEN, return_scores=True, **options)
    for size in (1, 3, 100):
        split = model.generate(src, max_length=MAX_LEN, return_scores=True, max_batch_size=size,
                               **options)
        _assert_same_results(split, whole, f"{name} max_batch_size={size}")


def test_input_order_preserved(gen_zoo, device):
    ckpt = gen_zoo("bart_gen")
    src = _sources("bart_gen")
    model = ckpt.model(device)
    forward = model.generate(src, beam_size=4, max_length=MAX_LEN, max_batch_size=3,
                             return_scores=True)
    # By construction the distinct sources give distinct outputs, so a mix-up shows.
    assert len({repr(r.tokens) for r in forward}) >= len(src) // 2
    perm = np.random.default_rng(0).permutation(len(src))
    shuffled = model.generate([src[i] for i in perm], beam_size=4, max_length=MAX_LEN,
                              max_batch_size=3, return_scores=True)
    _assert_same_results(shuffled, [forward[i] for i in perm], "permuted input")
    expected = ckpt.hf(src, beam_size=4, max_length=MAX_LEN)
    assert [r.tokens for r in forward] == expected.tokens


def test_array_input_equals_list_input(gen_zoo, device):
    ckpt = gen_zoo("marian_gen")
    src, _ = lib.make_batch("marian", [7, 7, 7], [1, 1, 1], seed=17)
    model = ckpt.model(device)
    expected = model.generate(src, beam_size=4, max_length=MAX_LEN, return_scores=True)
    for dtype in (np.int32, np.int64):
        got = model.generate(np.array(src, dtype=dtype), beam_size=4, max_length=MAX_LEN,
                             return_scores=True)
        _assert_same_results(got, expected, f"{np.dtype(dtype).name} array")


def test_generate_does_not_modify_input(gen_zoo, device):
    ckpt = gen_zoo("m2m_100_gen")
    src = _sources("m2m_100_gen", 4)
    copy = [list(s) for s in src]
    prefix = [[7]] * 4
    ckpt.model(device).generate(src, target_prefix=prefix, beam_size=2, max_length=MAX_LEN)
    assert src == copy and prefix == [[7]] * 4


# ---- generate_stream -----------------------------------------------------------------

@pytest.mark.parametrize("name", GEN_NAMES)
def test_stream_yields_greedy_tokens(gen_zoo, device, name):
    ckpt = gen_zoo(name)
    model = ckpt.model(device)
    src = _sources(name)
    expected = ckpt.hf(src, beam_size=1, max_length=MAX_LEN)
    for i, s in enumerate(src):
        stream = model.generate_stream(s, beam_size=1, max_length=MAX_LEN)
        assert iter(stream) is stream, "generate_stream must return an iterator"
        got = []
        for t in stream:
            assert type(t) is int, type(t)
            got.append(t)
        assert got == expected.tokens[i][0], f"{name} source {i}"


def test_stream_accepts_one_row_batch_and_options(gen_zoo, device):
    ckpt = gen_zoo("bart_gen")
    model = ckpt.model(device)
    src = _sources("bart_gen", 6)
    options = dict(beam_size=1, max_length=MAX_LEN, no_repeat_ngram_size=2, min_length=4)
    expected = ckpt.hf(src, **options)
    for i, s in enumerate(src):
        assert list(model.generate_stream([s], **options)) == expected.tokens[i][0]
        assert list(model.generate_stream(np.array([s]), **options)) == expected.tokens[i][0]


def test_stream_first_token_before_exhaustion(gen_zoo, device):
    """Tokens come one at a time: next() gives the first token, and the rest follow."""
    ckpt = gen_zoo("marian_gen")
    model = ckpt.model(device)
    src = _sources("marian_gen", 4)
    expected = [r.tokens[0] for r in model.generate(src, beam_size=1, max_length=MAX_LEN)]
    streams = [model.generate_stream(s, beam_size=1, max_length=MAX_LEN) for s in src]
    # Interleave the streams: each keeps its own state.
    got = [[] for _ in src]
    live = list(range(len(src)))
    while live:
        for i in list(live):
            try:
                got[i].append(next(streams[i]))
            except StopIteration:
                live.remove(i)
    assert got == expected


# ---- threads -----------------------------------------------------------------------------

def test_generate_from_several_threads(gen_zoo, device):
    """>= 8 Python threads decoding on one model at once match sequential calls."""
    ckpt = gen_zoo("marian_gen")
    model = ckpt.model(device)
    jobs = []
    for i in range(8):
        src = lib.gen_sources("marian_gen", 3 + i % 4, seed=40 + i)
        options = dict(beam_size=1 if i % 2 else 4, num_hypotheses=1 if i % 2 else 2,
                       max_length=MAX_LEN, return_scores=True)
        jobs.append((src, options))
    expected = [model.generate(src, **options) for src, options in jobs]
    results = [[None] * 3 for _ in jobs]
    errors = []
    barrier = threading.Barrier(len(jobs))

    def work(i):
        try:
            barrier.wait()
            for rep in range(3):
                results[i][rep] = model.generate(jobs[i][0], **jobs[i][1])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(len(jobs)):
        for rep in range(3):
            _assert_same_results(results[i][rep], expected[i], f"thread {i} call {rep}")
