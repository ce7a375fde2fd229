"""The engine (step scheduler, `_core.Engine`) gives every request exactly what generate gives
for that request alone — tokens, scores and alignments, bit for bit — whatever shares its
steps: randomized option mixes (greedy, beam, seeded sampling and beam sampling, prefixes,
processors, n-best, alignments), arrival orders, staggered arrivals from two threads, a small
row budget and a small K/V pool that make requests wait and join mid-flight, 1 and 2 threads,
float32 and int8, Marian / BART / M2M100 / T5, on the CPU and the emulated CUDA backend."""
import random
import threading
import time

import numpy as np
import pytest

import tformer
from tformer import _core
from tformer.generate import build_options
from tformer.inputs import prepare_ids

import tf_testlib as lib

MAX_LEN = 14
OPTION_MIX = [
    dict(beam_size=1),
    dict(beam_size=4, num_hypotheses=2),
    dict(beam_size=1, do_sample=True, seed=7, sampling_topk=10),
    dict(beam_size=2, do_sample=True, seed=3, sampling_temperature=0.7),
    dict(beam_size=1, min_length=5, no_repeat_ngram_size=2, return_attention=True),
    dict(beam_size=3, length_penalty=0.6, return_attention=True, max_length=9),
    dict(beam_size=2, repetition_penalty=1.3, early_stopping=True),
    dict(beam_size=1, max_length=3),
]


def _requests(name, model, n, seed):
    """n requests of 1-4 sources each with options drawn from OPTION_MIX (a target prefix now and then)."""
    rng = random.Random(seed)
    sources = lib.gen_sources(name, 4 * n, seed=seed)
    out = []
    for i in range(n):
        k = rng.randint(1, 4)
        src = sources[4 * i:4 * i + k]
        options = dict(rng.choice(OPTION_MIX))
        options.setdefault("max_length", MAX_LEN)
        if rng.random() < 0.25:
            options["target_prefix"] = [[int(t) for t in rng.sample(range(4, 20), rng.randint(1, 2))] for _ in src]
        ids, lengths = prepare_ids(src, "src_ids")
        out.append((ids, lengths, options))
    return out


def _options(model, request):
    ids, lengths, options = request
    return build_options(model, len(lengths), return_scores=True, **options)


def _key(results):
    return [(r.tokens, [float(s).hex() for s in r.scores], [a.tobytes() for a in r.attention], r.cancelled)
            for r in results]


def _alone(model, requests):
    return [_key(model._core.generate(r[0], r[1], _options(model, r))) for r in requests]


def _engine(model, requests, order, *, max_rows=24, kv_cache_bytes=0, block_size=16, stagger=False, **knobs):
    engine = _core.Engine(model._core, max_rows=max_rows, max_batch_tokens=64, kv_cache_bytes=kv_cache_bytes,
                          block_size=block_size, **knobs)
    results, errors = {}, []
    finished = threading.Semaphore(0)

    def submit(i):
        ids, lengths, _ = requests[i]

        def on_done(res, error, i=i):
            if error is not None:
                errors.append(error)
            else:
                results[i] = _key(res)
            finished.release()
        engine.submit(ids, lengths, _options(model, requests[i]), on_done)

    if stagger:  # two threads, random small gaps: requests join while others run
        rng = random.Random(len(order))
        halves = [order[0::2], order[1::2]]

        def feed(part):
            try:
                for i in part:
                    time.sleep(rng.random() * 0.01)
                    submit(i)
            except Exception as e:  # reported below, not lost with the thread
                errors.append(repr(e))
                for _ in part:
                    finished.release()
        threads = [threading.Thread(target=feed, args=(p,)) for p in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in order:
            submit(i)
    for _ in order:
        assert finished.acquire(timeout=300), f"an engine request never finished {errors}"
    stats = engine.stats()
    engine.close()
    assert not errors, errors
    return [results[i] for i in range(len(requests))], stats


def _check(model, requests, **kw):
    alone = _alone(model, requests)
    assert len({str(a) for a in alone}) > len(requests) // 2, "degenerate reference"
    rng = random.Random(11)
    for order in (list(range(len(requests))), rng.sample(range(len(requests)), len(requests))):
        got, stats = _engine(model, requests, order, **kw)
        for i, (g, a) in enumerate(zip(got, alone)):
            assert g == a, f"request {i} ({requests[i][2]}) differs from generate alone"
    return stats


@pytest.mark.parametrize("name", ["marian_gen", "bart_gen", "m2m_100_gen"])
def test_engine_equals_generate_alone(gen_zoo, device, name):
    model = gen_zoo(name).model(device)
    stats = _check(model, _requests(name, model, 12, seed=1))
    assert stats["steps"] > 0 and stats["rows_per_step_mean"] > 1.5, stats  # requests really shared steps


@pytest.mark.parametrize("name", ["marian_gen", "m2m_100_gen"])
def test_engine_int8_equals_generate_alone(gen_zoo, name):
    model = gen_zoo(name).model("cpu").to(dtype="int8")
    _check(model, _requests(name, model, 10, seed=2))


def test_engine_t5_equals_generate_alone(t5_zoo, device):
    """T5: the self-attention's relative bias per row (rows sit at different positions)."""
    model = t5_zoo("t5_v11").model(device)
    sources = [[int(t) for t in np.random.default_rng(i).integers(3, 60, size=3 + i % 9)] + [1] for i in range(16)]
    requests = []
    for i in range(8):
        ids, lengths = prepare_ids(sources[2 * i:2 * i + 1 + i % 2], "src_ids")
        requests.append((ids, lengths, dict(OPTION_MIX[i % len(OPTION_MIX)], max_length=MAX_LEN)))
    _check(model, requests)


def test_engine_staggered_small_pool(gen_zoo):
    """Arrivals from two threads with gaps, a row budget and a K/V pool that hold only a few
    requests at once (the rest wait and join as others leave), block sizes 1 and 5."""
    model = gen_zoo("marian_gen").model("cpu")
    requests = _requests("marian_gen", model, 12, seed=3)
    cfg = model.config
    per_block = cfg.decoder_layers * 2 * cfg.d_model * 4
    # Blocks for about two of the largest requests (4 sources x beam 4 x 14 positions + sources).
    for block_size, blocks in ((1, 600), (5, 150)):
        stats = _check(model, requests, max_rows=20, kv_cache_bytes=per_block * block_size * blocks,
                       block_size=block_size, stagger=True)
        assert stats["kv_blocks_total"] == blocks


def test_engine_small_requests_first_same_results(gen_zoo):
    """large_request_every > 1 steps the small requests alone between full steps: the step
    compositions change, the results do not."""
    model = gen_zoo("m2m_100_gen").model("cpu")
    for every, small in ((2, 1), (3, 4)):
        stats = _check(model, _requests("m2m_100_gen", model, 10, seed=6), large_request_every=every,
                       small_request_rows=small, stagger=True)
        assert stats["steps"] > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_engine_equals_generate_alone_any_threads(gen_zoo, threads):
    model = gen_zoo("bart_gen").model("cpu")
    before = tformer.get_num_threads()
    try:
        tformer.set_num_threads(threads)
        _check(model, _requests("bart_gen", model, 8, seed=4))
    finally:
        tformer.set_num_threads(before)


# ---- what the engine refuses, cancels and reports ---------------------------------------------

def _tiny_engine(model, **kw):
    return _core.Engine(model._core, **kw)


def test_submit_refuses_what_generate_refuses(gen_zoo):
    model = gen_zoo("marian_gen").model("cpu")
    engine = _tiny_engine(model)
    ids, lengths = prepare_ids([[5, 6, 2]], "src_ids")
    bad = build_options(model, 1, beam_size=2)
    bad.num_hypotheses = 3
    with pytest.raises(ValueError, match="num_hypotheses"):
        engine.submit(ids, lengths, bad, lambda r, e: None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.submit(np.array([[10 ** 6, 2]], np.int32), [2], build_options(model, 1), lambda r, e: None)
    with pytest.raises(TypeError, match="callable"):
        engine.submit(ids, lengths, build_options(model, 1), None)
    engine.close()
    with pytest.raises(RuntimeError, match="engine is closed"):
        engine.submit(ids, lengths, build_options(model, 1), lambda r, e: None)


def test_submit_refuses_requests_that_never_fit(gen_zoo):
    model = gen_zoo("marian_gen").model("cpu")
    engine = _tiny_engine(model, max_rows=4)
    ids, lengths = prepare_ids([[5, 6, 2], [7, 2]], "src_ids")
    with pytest.raises(ValueError, match="max_rows 4"):
        engine.submit(ids, lengths, build_options(model, 2, beam_size=4), lambda r, e: None)
    engine.close()
    cfg = model.config
    small = _tiny_engine(model, kv_cache_bytes=cfg.decoder_layers * 2 * cfg.d_model * 4 * 16 * 3)
    with pytest.raises(ValueError, match="KV cache budget"):
        small.submit(ids, lengths, build_options(model, 2, beam_size=2, max_length=40), lambda r, e: None)
    small.close()


@pytest.mark.parametrize("kw, match", [(dict(max_rows=0), "max_rows"), (dict(max_rows=257), "between 1 and 256"), (dict(max_batch_tokens=0), "max_batch_tokens"),
                                       (dict(block_size=0), "block_size"), (dict(kv_cache_bytes=-1), "kv_cache_bytes"),
                                       (dict(large_request_every=0), "large_request_every"),
                                       (dict(small_request_rows=0), "small_request_rows"),
                                       (dict(kv_cache_bytes=10), "holds no K/V block")])
def test_engine_knobs_checked(gen_zoo, kw, match):
    model = gen_zoo("marian_gen").model("cpu")
    with pytest.raises(ValueError, match=match):
        _tiny_engine(model, **kw)


def test_cancel_queued_and_running_and_close(gen_zoo):
    """A token cancelled while queued: cancelled results without decoding; while running: the
    request stops at its next step; close(): what still runs comes back cancelled. The engine
    thread is held inside a request's first on_token callback while the test cancels or closes,
    so no timing decides which state a request is in."""
    model = gen_zoo("marian_gen").model("cpu")
    engine = _tiny_engine(model, max_rows=1)
    got = {}
    done = threading.Semaphore(0)

    def submit(key, tokens, hold=None):
        ids, lengths = prepare_ids([[5, 6, 7, 2]], "src_ids")
        opts = build_options(model, 1, beam_size=1, max_length=40, min_length=40, return_scores=True)
        opts.set_cancel(tokens)
        if hold is not None:  # (started, release): the engine waits in the first token's callback
            def on_token(source, token, started=hold[0], release=hold[1]):
                if not started.is_set():
                    started.set()
                    assert release.wait(timeout=60)
            opts.set_on_token(on_token)

        def on_done(res, err):
            got[key] = (res, err)
            done.release()
        engine.submit(ids, lengths, opts, on_done)

    def hold():
        return threading.Event(), threading.Event()

    running, queued = _core.CancelToken(), _core.CancelToken()
    held = hold()
    submit("running", [running], held)
    submit("queued", [queued])  # max_rows 1: waits behind "running"
    assert held[0].wait(timeout=60)  # "running" has its first token; the engine waits
    queued.cancel()
    running.cancel()
    held[1].set()
    for _ in range(2):
        assert done.acquire(timeout=60)
    assert got["queued"][0][0].cancelled and got["queued"][0][0].tokens == [[]]
    assert got["running"][0][0].cancelled and len(got["running"][0][0].tokens[0]) < 40
    # close(): 20 more requests, one row at a time; the engine is held in the first one's
    # first step while close() starts, so the others are still queued when it takes effect.
    held = hold()
    for i in range(20):
        submit(f"closed{i}", [_core.CancelToken()], held if i == 0 else None)
    assert held[0].wait(timeout=60)
    closer = threading.Thread(target=engine.close)
    closer.start()
    time.sleep(0.5)  # close() sets its flag at once (then waits for the engine thread)
    held[1].set()
    closer.join(timeout=60)
    assert not closer.is_alive()
    for _ in range(20):
        assert done.acquire(timeout=60)
    assert got["closed0"][0][0].cancelled and len(got["closed0"][0][0].tokens[0]) < 40
    assert all(got[f"closed{i}"][0][0].cancelled for i in range(1, 20))
    stats = engine.stats()
    assert stats["completed"] == 22 and stats["queue_length"] == 0 and stats["running_rows"] == 0
    assert stats["kv_blocks_used"] == 0


def test_stats_report_rows_queue_and_pool(gen_zoo):
    model = gen_zoo("marian_gen").model("cpu")
    engine = _tiny_engine(model, max_rows=8)
    before = engine.stats()
    assert before["steps"] == 0 and before["kv_blocks_total"] > 0 and before["max_rows"] == 8
    done = threading.Semaphore(0)
    for src in lib.gen_sources("marian_gen", 6, seed=5):
        ids, lengths = prepare_ids([src], "src_ids")
        engine.submit(ids, lengths, build_options(model, 1, beam_size=2, max_length=8), lambda r, e: done.release())
    for _ in range(6):
        assert done.acquire(timeout=60)
    after = engine.stats()
    engine.close()
    assert after["submitted"] == after["completed"] == 6
    assert 2 <= after["rows_per_step_mean"] <= 8 and after["steps"] >= 8
    assert after["encoder_tokens"] > 0 and after["kv_blocks_used"] == 0


@pytest.mark.parametrize("beam_size", [1, 4])
def test_engine_steps_allocate_nothing(gen_zoo, beam_size):
    """A request costs the same tensor allocations (its encoder, its cross K/V) whether it is
    decoded for 4 or 24 steps: the steps themselves allocate nothing."""
    model = gen_zoo("marian_gen").model("cpu")
    engine = _tiny_engine(model, max_rows=16)
    ids, lengths = prepare_ids([[5, 6, 7, 2], [8, 9, 2]], "src_ids")

    def run(steps):
        done = threading.Semaphore(0)
        opts = build_options(model, 2, beam_size=beam_size, max_length=steps, min_length=steps)
        before = _core.tensor_allocations()
        engine.submit(ids, lengths, opts, lambda r, e: done.release())
        assert done.acquire(timeout=60)
        return _core.tensor_allocations() - before

    run(4)  # warm
    short, long = run(4), run(24)
    engine.close()
    assert long == short, f"{long - short} extra tensor allocations for 20 more engine steps"
