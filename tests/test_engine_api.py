"""tformer.Engine's Python API: futures, asyncio, streams, cancellation, deadlines, errors.
Every result is compared with `model.generate` run alone on the same request (which the
parity tests compare with transformers); the engine's step sharing itself is
tests/test_engine_exactness.py's."""

import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest
import tformer
from tf_testlib import wait_for

SRC = [[5, 6, 7, 8, 1], [9, 10, 1], [11, 12, 13, 14, 15, 16, 1], [14, 1]]
LONG = 20000  # tokens forced (min_length = max_length): a minute or more of decoding for this model
FREED = 10.0  # seconds: a cancelled LONG request must be gone well before it could have finished
SEARCHES = {
    "greedy": dict(beam_size=1),
    "beam": dict(beam_size=4, num_hypotheses=2),
    "sampling": dict(beam_size=1, do_sample=True, seed=3, sampling_topk=8),
    "beam_sampling": dict(beam_size=3, do_sample=True, seed=5),
}


@pytest.fixture(scope="module")
def model():
    cfg = tformer.TransformerConfig(src_vocab_size=64, tgt_vocab_size=64, d_model=32, encoder_layers=2,
                                    decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                    decoder_ffn_dim=64, max_positions=LONG + 8)
    return tformer.Transformer(cfg, seed=0)


@pytest.fixture
def engine(model):
    with tformer.Engine(model, max_rows=64) as engine:
        yield engine


def same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert isinstance(g, type(e))
        assert (g.tokens, g.scores, g.cancelled) == (e.tokens, e.scores, e.cancelled)
        assert len(g.attention) == len(e.attention)
        for a, b in zip(g.attention, e.attention):
            np.testing.assert_array_equal(a, b)


def long_request(engine, **kw):
    return engine.submit([[5, 6, 7, 1]], beam_size=1, max_length=LONG, min_length=LONG, **kw)


def wait_until(condition, timeout=FREED):
    return wait_for(condition, "the engine", timeout)


@pytest.mark.parametrize("search", SEARCHES)
def test_submit_equals_generate_alone(model, engine, search):
    opts = dict(max_length=12, return_scores=True, **SEARCHES[search])
    got = engine.submit(SRC, **opts).result(timeout=60)
    same(got, model.generate(SRC, **opts))


def test_options_prefix_and_attention_follow_the_input_order(model, engine):
    # Sources are sorted by length inside: per-source options must follow them back.
    opts = dict(beam_size=2, max_length=10, return_attention=True, return_scores=True,
                target_prefix=[[3], [4, 5], [], [6]])
    got = engine.submit(SRC, **opts).result(timeout=60)
    same(got, model.generate(SRC, **opts))
    assert [r.tokens[0][:2] for r in got][1] == [4, 5]


def test_one_flat_list_is_one_source(model, engine):
    got = engine.submit(np.array([5, 6, 7, 1]), beam_size=1, max_length=8).result(timeout=60)
    same(got, model.generate([[5, 6, 7, 1]], beam_size=1, max_length=8))
    got = engine.submit([5, 6, 7, 1], beam_size=1, max_length=8).result(timeout=60)
    same(got, model.generate([[5, 6, 7, 1]], beam_size=1, max_length=8))


def test_concurrent_requests_with_different_options(model, engine):
    requests = [(SRC[i % 4:], dict(max_length=6 + i, return_scores=True, **SEARCHES[s]))
                for i, s in enumerate(list(SEARCHES) * 3)]
    futures = [None] * len(requests)

    def submit(i):
        futures[i] = engine.submit(requests[i][0], **requests[i][1])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (src, opts), future in zip(requests, futures):
        same(future.result(timeout=60), model.generate(src, **opts))
    assert engine.stats()["completed"] >= len(requests)


@pytest.mark.parametrize("search", SEARCHES)
def test_stream_yields_the_best_hypothesis(model, engine, search):
    opts = dict(max_length=12, **SEARCHES[search])
    tokens = list(engine.stream(SRC[2], **opts))
    assert tokens == model.generate([SRC[2]], **opts)[0].tokens[0]


def test_closing_a_stream_early_cancels_its_request(model, engine):
    stream = engine.stream([5, 6, 7, 1], beam_size=1, max_length=LONG, min_length=LONG)
    first = [next(stream) for _ in range(3)]
    assert len(first) == 3
    stream.close()
    # Rows freed: a short request behind it finishes long before the forced 2000 tokens would.
    same(engine.submit(SRC, beam_size=1, max_length=6).result(timeout=FREED),
         model.generate(SRC, beam_size=1, max_length=6))
    wait_until(lambda: engine.stats()["running_requests"] == 0 and engine.stats()["queue_length"] == 0)


def test_beam_stream_sends_agreed_tokens_before_the_end(model, engine):
    # A forced prefix: every beam agrees on its tokens from the first steps, long before a
    # LONG beam search could end.
    start = time.monotonic()
    with engine.stream([5, 6, 7, 1], beam_size=4, max_length=LONG, min_length=LONG, target_prefix=[[7, 8, 9]]) as stream:
        first = [next(stream) for _ in range(3)]
    assert first == [7, 8, 9]
    assert time.monotonic() - start < FREED
    assert stream.future.cancelled()
    wait_until(lambda: engine.stats()["running_requests"] == 0 and engine.stats()["queue_length"] == 0)


def test_a_stream_dropped_unread_cancels_its_request(model, engine):
    stream = engine.stream([5, 6, 7, 1], beam_size=1, max_length=LONG, min_length=LONG)
    future = stream.future
    del stream
    assert future.cancelled()
    wait_until(lambda: engine.stats()["running_requests"] == 0 and engine.stats()["queue_length"] == 0)


def test_a_stream_past_its_deadline_raises(engine):
    stream = engine.stream([5, 6, 7, 1], beam_size=1, max_length=LONG, min_length=LONG, deadline=0.2)
    start = time.monotonic()
    with pytest.raises(tformer.DeadlineExceeded):
        for _ in stream:
            pass
    assert time.monotonic() - start < FREED
    with engine.stream([5, 6, 7, 1], beam_size=1, max_length=4, return_scores=True) as stream:
        tokens = list(stream)
    assert stream.future.result()[0].tokens[0] == tokens


def test_future_cancel_while_running(model, engine):
    future = long_request(engine)
    wait_until(lambda: engine.stats()["running_requests"] == 1)
    assert future.cancel()
    assert future.cancelled() and future.done()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    same(engine.submit(SRC, beam_size=1, max_length=6).result(timeout=FREED),
         model.generate(SRC, beam_size=1, max_length=6))
    wait_until(lambda: engine.stats()["running_requests"] == 0)


def test_future_cancel_while_queued(model):
    with tformer.Engine(model, max_rows=1) as engine:  # the long request holds the only row
        running = long_request(engine)
        wait_until(lambda: engine.stats()["running_requests"] == 1)
        queued = engine.submit([[9, 10, 1]], beam_size=1, max_length=6)
        assert queued.cancel() and queued.cancelled()
        assert running.cancel()
        after = engine.submit([[9, 1]], beam_size=1, max_length=6)
        same(after.result(timeout=FREED), model.generate([[9, 1]], beam_size=1, max_length=6))
        assert not queued.cancel() or queued.cancelled()  # done futures stay as they are


def test_cancel_after_the_result_is_refused(engine):
    future = engine.submit(SRC, beam_size=1, max_length=4)
    future.result(timeout=60)
    assert not future.cancel() and not future.cancelled()


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_a_deadline_that_passes_raises_deadline_exceeded(engine, search):
    future = engine.submit(SRC, max_length=LONG, min_length=LONG, deadline=0.2, **SEARCHES[search])
    with pytest.raises(tformer.DeadlineExceeded, match="deadline of 0.2 s passed") as e:
        future.result(timeout=FREED)
    assert isinstance(e.value, TimeoutError)
    with pytest.raises(tformer.DeadlineExceeded):
        engine.submit(SRC, deadline=0).result(timeout=60)


def test_a_request_within_its_deadline_returns_results(model, engine):
    got = engine.submit(SRC, beam_size=2, max_length=8, deadline=600).result(timeout=60)
    same(got, model.generate(SRC, beam_size=2, max_length=8))


def test_cancel_tokens_give_cancelled_results_as_generate(model, engine):
    tokens = [tformer.CancelToken() for _ in SRC]
    tokens[1].cancel()
    opts = dict(beam_size=2, max_length=8, return_scores=True)
    got = engine.submit(SRC, cancel=tokens, **opts).result(timeout=60)
    same(got, model.generate(SRC, cancel=tokens, **opts))
    assert [r.cancelled for r in got] == [False, True, False, False]


def test_generate_async_and_astream(model, engine):
    opts = dict(beam_size=3, max_length=10, return_scores=True)

    async def main():
        results = await asyncio.gather(*(engine.generate_async([s], **opts) for s in SRC))
        streamed = [t async for t in engine.astream(SRC[0], beam_size=1, max_length=10)]
        return results, streamed

    results, streamed = asyncio.run(main())
    for s, r in zip(SRC, results):
        same(r, model.generate([s], **opts))
    assert streamed == model.generate([SRC[0]], beam_size=1, max_length=10)[0].tokens[0]


def test_cancelling_the_async_task_cancels_the_request(model, engine):
    async def main():
        task = asyncio.ensure_future(engine.generate_async([[5, 6, 1]], beam_size=1, max_length=LONG,
                                                           min_length=LONG))
        while engine.stats()["running_requests"] == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        tokens = []
        async for token in engine.astream([5, 6, 7, 1], beam_size=1, max_length=LONG, min_length=LONG):
            tokens.append(token)
            if len(tokens) == 2:
                break
        # The loop dropped the stream: its request is cancelled.
        wait_until(lambda: engine.stats()["running_requests"] == 0 and engine.stats()["queue_length"] == 0)
        async with engine.astream([5, 6, 7, 1], beam_size=1, max_length=LONG, min_length=LONG) as stream:
            assert isinstance(await stream.__anext__(), int)
        assert stream.future.cancelled()
        return await engine.generate_async(SRC, beam_size=1, max_length=6)

    start = time.monotonic()
    same(asyncio.run(main()), model.generate(SRC, beam_size=1, max_length=6))
    assert time.monotonic() - start < 2 * FREED
    wait_until(lambda: engine.stats()["running_requests"] == 0)


def test_close_cancels_queued_and_running_requests(model):
    engine = tformer.Engine(model, max_rows=1)
    running = long_request(engine)
    wait_until(lambda: engine.stats()["running_requests"] == 1)
    queued = engine.submit([[9, 10, 1]], beam_size=1, max_length=6)
    engine.close()
    for future in (running, queued):
        results = future.result(timeout=FREED)
        assert all(r.cancelled for r in results)
    assert len(running.result()[0].tokens[0]) < LONG
    for call in (lambda: engine.submit(SRC), lambda: engine.stream(SRC[0]),
                 lambda: asyncio.run(engine.generate_async(SRC))):
        with pytest.raises(RuntimeError, match="engine is closed"):
            call()
    engine.close()  # twice is fine


def test_large_requests_wait_for_a_large_step_while_a_small_one_runs(model):
    """Small requests first: a large newcomer is not even admitted (no encoder run, no rows)
    during the small-only steps; once the small request ends it runs, with generate's results."""
    with tformer.Engine(model, max_rows=64, large_request_every=1_000_000, small_request_rows=1) as engine:
        small = engine.stream([5, 6, 7, 1], beam_size=1, max_length=LONG, min_length=LONG)
        next(small)
        before = engine.stats()
        large = engine.submit(SRC, beam_size=2, max_length=6, return_scores=True)
        wait_until(lambda: engine.stats()["steps"] >= before["steps"] + 30)
        stats = engine.stats()
        assert stats["queue_length"] == 1 and stats["running_requests"] == 1
        assert stats["encoder_tokens"] == before["encoder_tokens"]
        small.close()  # the small request leaves: the large one is admitted at the next step
        same(large.result(timeout=FREED), model.generate(SRC, beam_size=2, max_length=6, return_scores=True))


def test_stats(engine):
    stats = engine.stats()
    for key in ("steps", "rows_last_step", "rows_per_step_mean", "queue_length", "running_requests", "running_rows",
                "max_rows", "kv_block_size", "kv_blocks_total", "kv_blocks_used", "kv_bytes_total", "kv_bytes_used",
                "completed", "encoder_tokens"):
        assert key in stats, key
    assert stats["max_rows"] == 64 and stats["kv_block_size"] == 16
    before = stats["completed"]
    engine.submit(SRC, beam_size=1, max_length=4).result(timeout=60)
    wait_until(lambda: engine.stats()["completed"] == before + 1)
    assert engine.stats()["encoder_tokens"] >= sum(map(len, SRC))


def test_engine_from_a_saved_directory(model, tmp_path):
    model.save(tmp_path / "m")
    with tformer.Engine(tmp_path / "m", max_rows=8) as engine:
        got = engine.submit(SRC, beam_size=2, max_length=8, return_scores=True).result(timeout=60)
    same(got, model.generate(SRC, beam_size=2, max_length=8, return_scores=True))


def test_engine_from_a_hugging_face_directory(gen_zoo):
    ckpt = gen_zoo("marian_gen")
    src = [[5, 6, 7, ckpt.eos], [8, 9, ckpt.eos]]
    with tformer.Engine(str(ckpt.dir), max_rows=8) as engine:
        got = engine.submit(src, beam_size=2, max_length=8, return_scores=True).result(timeout=60)
    same(got, ckpt.model().generate(src, beam_size=2, max_length=8, return_scores=True))


@pytest.mark.parametrize("options, message", [
    (dict(beam_size=0), "beam_size"),
    (dict(max_length=0), "max_length"),
    (dict(target_prefix=[[1]]), "target_prefix has 1 entries for 4 sources"),
    (dict(eos_token_id=99), "eos_token_id"),
])
def test_bad_options_raise_generates_error_at_submit(model, engine, options, message):
    with pytest.raises(ValueError, match=message) as expected:
        model.generate(SRC, **options)
    with pytest.raises(ValueError) as got:
        engine.submit(SRC, **options)
    assert str(got.value) == str(expected.value)
    with pytest.raises(TypeError, match="unexpected option"):
        engine.submit(SRC, beam_sizes=2)


@pytest.mark.parametrize("call, message", [
    (lambda e: e.submit(SRC, max_batch_size=2), "max_batch_size is not an engine option"),
    (lambda e: e.submit(SRC, deadline=-1), "deadline must be None or a number of seconds >= 0"),
    (lambda e: e.submit(SRC, deadline="1"), "deadline must be None or a number of seconds >= 0"),
    (lambda e: e.submit(SRC, deadline=1, cancel=tformer.CancelToken()), "pass deadline or cancel, not both"),
    (lambda e: e.submit(SRC, cancel=[tformer.CancelToken()]), "cancel has 1 tokens for 4 sources"),
    (lambda e: e.stream(SRC), "stream takes one source, got 4"),
    (lambda e: e.submit([]), "src_ids: empty batch"),
])
def test_bad_arguments(engine, call, message):
    with pytest.raises(ValueError, match=message):
        call(engine)


@pytest.mark.parametrize("knobs, message", [
    (dict(max_rows=0), "max_rows"), (dict(max_batch_tokens=0), "max_batch_tokens"), (dict(block_size=0), "block_size"),
    (dict(kv_cache_mb=0), "kv_cache_mb must be None"), (dict(kv_cache_mb=float("nan")), "kv_cache_mb must be None"),
])
def test_bad_engine_knobs(model, knobs, message):
    with pytest.raises(ValueError, match=message):
        tformer.Engine(model, **knobs)


def test_bad_model_argument():
    with pytest.raises(TypeError, match="model_or_path must be a tformer.Transformer or a model directory"):
        tformer.Engine(42)


def test_mixed_requests_on_device(model, device):
    on_device = model.to(device)
    requests = [(SRC[i:], dict(max_length=8, return_scores=True, **SEARCHES[s])) for i, s in enumerate(SEARCHES)]
    with tformer.Engine(on_device, max_rows=32) as engine:
        futures = [engine.submit(src, **opts) for src, opts in requests]
        streamed = list(engine.stream(SRC[0], beam_size=4, max_length=8))
        for (src, opts), future in zip(requests, futures):
            same(future.result(timeout=60), on_device.generate(src, **opts))
    assert streamed == on_device.generate([SRC[0]], beam_size=4, max_length=8)[0].tokens[0]
