"""Weights changed while other threads use the model (issue 13, item 5; docs/ARCHITECTURE.md,
"Threads"). Reader threads run generate (beam search; greedy split into chunks by
max_batch_size), generate_stream, forward and encode in loops while a writer changes the
weights through the public API: Trainer.load taking the model over, Trainer.step updating it,
Transformer.set_parameters replacing it. Before the threads start, the same calls are made
one at a time for every set of weights the writer goes through; each concurrent result must be
exactly one of those. A reader that saw some weights old and some new, or weights freed under
it, gives something else (on 9e816d1: other tokens, or errors such as "dimension 0 out of range").
"""

import dataclasses
import faulthandler
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tformer

CFG = tformer.TransformerConfig(src_vocab_size=48, tgt_vocab_size=48, d_model=32, encoder_layers=2,
                                decoder_layers=2, encoder_heads=4, decoder_heads=4, encoder_ffn_dim=64,
                                decoder_ffn_dim=64, max_positions=64)
# One update = AdamW's first step (lr * sign of the gradient, roughly): large enough that the
# greedy and beam outputs change from one set of weights to the next.
TRAIN = dict(lr=0.02, schedule="constant", warmup_steps=0, dropout=0.0, label_smoothing=0.0, clip_norm=None)
TRAIN_BATCH = ([[5, 9, 14, 22, 1], [7, 3, 30, 1]], [[11, 12, 13], [40, 2, 8, 17]])
SOURCES = [[3, 17, 29, 8, 1], [44, 6, 1], [12, 12, 40, 21, 33, 9, 1], [25, 1]]
MAX_LEN = 10
STREAM_LEN = 40
SECONDS = 3.0  # each concurrent run


def _outputs(model):
    """What every reader computes, called one at a time: the references."""
    tgt = [[2, 5, 7], [2, 9], [2, 11, 3, 30], [2]]
    return {
        "beam": [r.tokens for r in model.generate(SOURCES, beam_size=3, num_hypotheses=2, max_length=MAX_LEN)],
        "greedy": [r.tokens for r in model.generate(SOURCES, beam_size=1, max_length=MAX_LEN, max_batch_size=1)],
        "stream": list(model.generate_stream(SOURCES[2], max_length=STREAM_LEN, min_length=STREAM_LEN)),
        "forward": model.forward(SOURCES, tgt),
        "encode": model.encode(SOURCES),
    }


def _copies(model):
    return {name: np.array(value) for name, value in model.parameters().items()}


def _same(a, b):
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b))
    return a == b


def _readers(model):
    """(kind, call) pairs; several threads per kind of call."""
    calls = {
        "beam": lambda: [r.tokens for r in model.generate(SOURCES, beam_size=3, num_hypotheses=2, max_length=MAX_LEN)],
        "greedy": lambda: [r.tokens for r in model.generate(SOURCES, beam_size=1, max_length=MAX_LEN,
                                                            max_batch_size=1)],
        "stream": lambda: list(model.generate_stream(SOURCES[2], max_length=STREAM_LEN, min_length=STREAM_LEN)),
        "forward": lambda: model.forward(SOURCES, [[2, 5, 7], [2, 9], [2, 11, 3, 30], [2]]),
        "encode": lambda: model.encode(SOURCES),
    }
    return [(kind, calls[kind]) for kind in ("beam", "beam", "greedy", "greedy", "stream", "forward", "encode")]


def _run_concurrently(model, writer, expected):
    """Readers loop until `writer` returns; returns (results checked, problems)."""
    done = threading.Event()
    problems, counts = [], []

    def read(kind, call):
        n = 0
        try:
            while not done.is_set():
                got = call()
                n += 1
                if not any(_same(got, e[kind]) for e in expected):
                    problems.append(f"{kind}: a result that no consistent set of weights gives")
        except Exception as e:  # noqa: BLE001 - every error is a failure, reported below
            problems.append(f"{kind}: {type(e).__name__}: {e}")
        counts.append(n)

    threads = [threading.Thread(target=read, args=r, daemon=True) for r in _readers(model)]
    for t in threads:
        t.start()
    try:
        writer()
    except Exception as e:  # noqa: BLE001
        problems.append(f"writer: {type(e).__name__}: {e}")
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a reader did not finish: deadlock?"
    return sum(counts), problems


def _distinct(expected):
    """The references differ between weight sets: the test can tell them apart."""
    for kind in ("beam", "greedy", "stream", "forward"):
        assert not _same(expected[0][kind], expected[1][kind]), kind


@pytest.fixture(autouse=True)
def one_thread_each():
    """One CPU thread per call: seven readers and a writer share the cores without spinning
    against each other (set_num_threads applies to every calling thread). A deadlock that
    holds the GIL would also stop join(timeout); faulthandler's watchdog needs no GIL: it
    prints every thread's stack and ends the run instead of letting it hang."""
    saved = tformer.get_num_threads()
    tformer.set_num_threads(1)
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
    tformer.set_num_threads(saved)


@pytest.fixture
def checkpoint(tmp_path):
    """A saved Trainer (settings, zero moments, step 0): Trainer.load starts the same each time."""
    tformer.Trainer(tformer.Transformer(CFG, seed=0), **TRAIN).save(tmp_path / "trainer")
    return tmp_path / "trainer"


def test_training_while_generating(checkpoint, device):
    """The writer repeats: Trainer.load(checkpoint, model) (the model's weights move into the
    trainer's flat buffer), then one Trainer.step (AdamW updates them in place)."""
    reference = tformer.Transformer(CFG, seed=0, device=device)
    expected, states = [_outputs(reference)], [_copies(reference)]
    n_steps = 12
    for _ in range(n_steps):  # the writer's sequence of weights, one call at a time
        tformer.Trainer.load(checkpoint, reference).step(*TRAIN_BATCH)
        expected.append(_outputs(reference))
        states.append(_copies(reference))
    _distinct(expected)

    model = tformer.Transformer(CFG, seed=0, device=device)
    pause = SECONDS / n_steps

    def writer():
        for k in range(1, n_steps + 1):
            time.sleep(pause)
            tformer.Trainer.load(checkpoint, model).step(*TRAIN_BATCH)
            now = model.parameters()
            assert all(np.array_equal(now[n], states[k][n]) for n in now), f"step {k} is not reproducible"

    checked, problems = _run_concurrently(model, writer, expected)
    assert not problems, f"{len(problems)} of {checked} concurrent results wrong, first: {problems[:3]}"
    assert checked > 50


def test_set_parameters_while_generating(checkpoint, device):
    """The writer alternates the weights A and B with set_parameters (all names at once), and
    lets Trainer.load take the model over in between (values unchanged)."""
    a = tformer.Transformer(CFG, seed=0, device=device)
    b = tformer.Transformer(CFG, seed=1, device=device)
    expected = [_outputs(a), _outputs(b)]
    _distinct(expected)
    weights = [_copies(a), _copies(b)]
    model = tformer.Transformer(CFG, seed=0, device=device)

    def writer():
        end = time.monotonic() + SECONDS
        k = 0
        while time.monotonic() < end:
            k += 1
            model.set_parameters(weights[k % 2])
            time.sleep(0.01)
            tformer.Trainer.load(checkpoint, model)
            time.sleep(0.01)

    checked, problems = _run_concurrently(model, writer, expected)
    assert not problems, f"{len(problems)} of {checked} concurrent results wrong, first: {problems[:3]}"
    assert checked > 50


# Run in a child process: a deadlock involving the GIL would also stop this process's own
# timeout (join(timeout) needs the GIL to return), so only a parent can turn it into a failure.
STREAM_AND_WRITER = """
import sys, threading, time
import numpy as np
import tformer

tformer.set_num_threads(1)
cfg = tformer.TransformerConfig(**CFG)
a, b = tformer.Transformer(cfg, seed=0), tformer.Transformer(cfg, seed=1)
src, n = SRC, N
expected = [list(m.generate_stream(src, max_length=n, min_length=n)) for m in (a, b)]
assert expected[0] != expected[1]
weights = [{k: np.array(v) for k, v in m.parameters().items()} for m in (a, b)]
model = tformer.Transformer(cfg, seed=0)
streams, errors, writes = [], [], [0]
stop = threading.Event()

def consume():
    try:
        for _ in range(3):
            tokens = []
            for token in model.generate_stream(src, max_length=n, min_length=n):
                tokens.append(token)
                time.sleep(0.002)  # a slow consumer: the search runs ahead of it
            streams.append(tokens)
    except Exception as e:
        errors.append(repr(e))
    finally:
        stop.set()

def write():
    try:
        while not stop.is_set():
            writes[0] += 1
            model.set_parameters(weights[writes[0] % 2])
            if writes[0] % 5 == 0:
                tformer.Trainer.load(sys.argv[1], model)
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=consume), threading.Thread(target=write)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
assert len(streams) == 3 and all(s in expected for s in streams), streams
print("ok", writes[0])
"""


def test_slow_stream_and_writer_both_finish(checkpoint):
    """generate_stream's tokens reach Python through a callback that needs the GIL while the
    C++ search holds the weights; a writer waits for them meanwhile. Consumed slowly, with
    writes coming all the time (set_parameters, Trainer.load), both must finish (a writer that
    waited with the GIL held would hang them both), and each stream must be one set's tokens."""
    code = f"CFG = {dataclasses.asdict(CFG)!r}\nSRC = {SOURCES[0]!r}\nN = {STREAM_LEN}\n" + STREAM_AND_WRITER
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(checkpoint)], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("generate_stream and a writer deadlocked (no end within 60 s)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok"), proc.stdout
    assert int(proc.stdout.split()[1]) > 10, "the writer hardly ran: the test proved nothing"
