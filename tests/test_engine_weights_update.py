"""A weight update (model.set_parameters) while a tformer.Engine serves continuous traffic:
the update gets in once the running requests have finished (the engine admits nothing new
while it waits), every request decodes with one set of weights (its result equals
model.generate alone with the old or with the new weights), and the requests that come after
the update see the new weights. References: model.generate run alone, which the parity tests
compare with transformers."""

import concurrent.futures
import contextlib
import threading
import time

import pytest
import tformer
from tf_testlib import wait_for

CFG = dict(src_vocab_size=64, tgt_vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=2, encoder_heads=4,
           decoder_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_positions=20008)
LONG = 20000  # tokens forced: a minute or more of decoding for this model
KV_MB = 64  # the K/V pool: room for LONG, a small pool to touch
# Forced lengths (min_length = max_length), different per request: requests admitted together
# finish at different steps and the streams below refill the engine as each one finishes, so
# its running set is never empty while they go on.
REQUESTS = [
    ([[5, 6, 7, 8, 1], [9, 10, 1]], dict(beam_size=1, max_length=31, min_length=31)),
    ([[11, 12, 13, 1]], dict(beam_size=3, max_length=47, min_length=47)),
    ([[14, 15, 1]], dict(beam_size=1, max_length=62, min_length=62, do_sample=True, seed=7, sampling_topk=5)),
    ([[16, 17, 18, 19, 1]], dict(beam_size=2, max_length=79, min_length=79)),
]
UPDATE_BOUND = 10.0  # seconds: the update must get in well within this (it waited forever before)
STREAMS, IN_FLIGHT = 2, 4


def key(results):
    return [(r.tokens, r.scores) for r in results]


def new_model():
    return tformer.Transformer(tformer.TransformerConfig(**CFG), seed=0)


def references(model):
    return [key(model.generate(src, **opts)) for src, opts in REQUESTS]


@pytest.fixture(scope="module")
def weights():
    """(old references, new parameters, new references): a second random model's weights."""
    model = new_model()
    other = tformer.Transformer(tformer.TransformerConfig(**CFG), seed=1)
    old, new = references(model), references(other)
    assert all(o != n for o, n in zip(old, new))  # else the test could not tell them apart
    return old, other.parameters(), new


def stream(engine, results, errors, stop, updated, offset):
    """Keeps IN_FLIGHT requests in the engine until stop, submitting one as soon as one
    finishes; records (request index, submitted after the update returned, results)."""
    try:
        inflight, n = {}, offset
        while not stop.is_set():
            while len(inflight) < IN_FLIGHT:
                i = n % len(REQUESTS)
                n += 1
                src, opts = REQUESTS[i]
                inflight[engine.submit(src, **opts)] = (i, updated.is_set())
            done, _ = concurrent.futures.wait(inflight, timeout=60, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                results.append((*inflight.pop(fut), key(fut.result())))
        for fut, (i, after) in inflight.items():
            results.append((i, after, key(fut.result(timeout=60))))
    except BaseException as e:  # reported by the test
        errors.append(e)


@contextlib.contextmanager
def traffic(engine):
    """STREAMS threads keeping the engine busy (see stream) while the block runs; yields
    (results, errors, updated: set it once the update has returned). Stopped and joined at exit."""
    results, errors, stop, updated = [], [], threading.Event(), threading.Event()
    streams = [threading.Thread(target=stream, args=(engine, results, errors, stop, updated, k), daemon=True)
               for k in range(STREAMS)]
    for t in streams:
        t.start()
    try:
        yield results, errors, updated
    finally:
        stop.set()
        for t in streams:
            t.join(120)


def test_update_under_continuous_traffic_gets_in_and_each_request_is_consistent(weights):
    old, params, new = weights
    model = new_model()
    took = []
    with tformer.Engine(model, max_rows=64, kv_cache_mb=KV_MB) as engine, traffic(engine) as (results, errors, updated):
        wait_for(lambda: len(results) >= 6 or errors, "traffic", 60)  # traffic flows

        def update():
            start = time.monotonic()
            model.set_parameters(params)
            took.append(time.monotonic() - start)
            updated.set()

        writer = threading.Thread(target=update, daemon=True)
        writer.start()
        writer.join(UPDATE_BOUND)
        assert not writer.is_alive(), f"set_parameters still waits after {UPDATE_BOUND} s of continuous traffic"
        # Requests submitted after the update returned must come back too.
        wait_for(lambda: sum(after for _, after, _ in results) >= 6 or errors, "requests after the update", 60)
    assert not errors, errors
    assert took[0] < UPDATE_BOUND
    olds = news = 0
    for i, after, got in results:
        if after:
            assert got == new[i], f"request {i} submitted after the update did not use the new weights"
        else:
            assert got in (old[i], new[i]), f"request {i} mixed old and new weights"
        olds += got == old[i]
        news += got == new[i]
    assert olds >= 6 and news >= 6
    # The model itself now answers with the new weights.
    assert references(model) == new


def test_training_the_served_model_under_traffic():
    """Trainer.step's AdamW update is a writer too: each step gets in within the bound, and
    every request's result is generate's with one of the versions of the weights."""
    model = new_model()
    trainer = tformer.Trainer(model, lr=0.02, schedule="constant", warmup_steps=0, dropout=0.0,
                              label_smoothing=0.0, clip_norm=None)
    versions = [model.parameters()]
    with tformer.Engine(model, max_rows=64, kv_cache_mb=KV_MB) as engine, traffic(engine) as (results, errors, updated):
        for _ in range(3):
            done_before = len(results)
            wait_for(lambda: len(results) >= done_before + 8 or errors, "requests", 60)  # some with this version
            writer = threading.Thread(target=trainer.step, args=([[5, 9, 14, 22, 1], [7, 3, 30, 1]],
                                                                 [[11, 12, 13], [40, 2, 8, 17]]), daemon=True)
            writer.start()
            writer.join(UPDATE_BOUND)
            assert not writer.is_alive(), f"Trainer.step still waits after {UPDATE_BOUND} s of continuous traffic"
            versions.append(model.parameters())
        updated.set()
        wait_for(lambda: sum(after for _, after, _ in results) >= 6 or errors, "requests after the update", 60)
    assert not errors, errors
    refs = []
    for params in versions:
        other = new_model()
        other.set_parameters(params)
        refs.append(references(other))
    assert len({str(r) for r in refs}) == len(versions)  # every step changed the outputs
    seen = set()
    for i, after, got in results:
        matches = [v for v, r in enumerate(refs) if got == r[i]]
        assert matches, f"request {i} was decoded with no single version of the weights"
        if after:
            assert matches == [len(versions) - 1]
        seen.update(matches)
    assert len(seen) >= 3


def test_update_from_an_engine_callback_raises_instead_of_deadlocking(weights):
    _, params, _ = weights
    model = new_model()
    caught = []

    def on_token(source, token):  # runs on the engine thread, which holds the weights shared
        if not caught:
            try:
                model.set_parameters(params)
            except RuntimeError as e:
                caught.append(e)

    src, opts = REQUESTS[0]
    with tformer.Engine(model, max_rows=64, kv_cache_mb=KV_MB) as engine:
        fut = engine.submit(src, on_token=on_token, **opts)
        assert key(fut.result(timeout=60)) == weights[0][0]  # decoded with the old weights throughout
        # The engine goes on, and an update from this thread gets in.
        assert key(engine.submit(src, **opts).result(timeout=60)) == weights[0][0]
        model.set_parameters(params)
        assert key(engine.submit(src, **opts).result(timeout=60)) == weights[2][0]
    assert len(caught) == 1
    assert "wait for itself" in str(caught[0]) and "another thread" in str(caught[0])


def test_a_long_request_is_stopped_after_update_wait_steps(weights):
    _, params, new = weights
    model = new_model()
    tokens, took = [], []

    def update():
        start = time.monotonic()
        model.set_parameters(params)
        took.append(time.monotonic() - start)

    with tformer.Engine(model, max_rows=64, kv_cache_mb=KV_MB, update_wait_steps=8) as engine:
        long = engine.submit([[5, 6, 7, 1]], beam_size=1, max_length=LONG, min_length=LONG,
                             on_token=lambda source, token: tokens.append(token))
        wait_for(lambda: len(tokens) >= 3, "the long request's tokens", 60)
        writer = threading.Thread(target=update, daemon=True)
        writer.start()
        writer.join(UPDATE_BOUND)
        assert not writer.is_alive(), "set_parameters waited for the whole long request"
        with pytest.raises(RuntimeError, match="stopped after 8 steps to let a weight update in.*submit it again"):
            long.result(timeout=60)
        assert len(tokens) < LONG
        src, opts = REQUESTS[0]
        assert key(engine.submit(src, **opts).result(timeout=60)) == new[0]
        assert engine.stats()["failed"] == 1


@pytest.mark.parametrize("value", [-1, 1.5, "8"])
def test_update_wait_steps_is_checked(value):
    with pytest.raises((ValueError, TypeError), match="update_wait_steps"):
        tformer.Engine(new_model(), update_wait_steps=value)


def test_update_wait_steps_is_checked_by_the_core_engine():
    with pytest.raises(ValueError, match="update_wait_steps must be >= 0"):
        tformer._core.Engine(new_model()._core, update_wait_steps=-1)
