"""`tformer serve --scheduler engine` (issue 16): requests with any options decoded together by
a tformer.Engine, each translation equal to Translator.translate's for that request alone;
`"stream": true` (server-sent events of the partial translations); /stats with the engine's
rows per step, queue and K/V pool; deadlines and client disconnects free a request's rows;
an M2M100 model mixes target languages. Tiny Marian / M2M100 checkpoints with real
tokenizers (test_translator); TestClient in-process, and the real command on 127.0.0.1."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import tformer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from tformer.serve import ServeLimits, create_app  # noqa: E402
from tformer.serve import sse  # noqa: E402

import test_translator as tt  # noqa: E402
from tf_testlib import run_concurrently, stop_process, wait_for, wait_for_server  # noqa: E402

TEXTS = tt.TEXTS
OPTS = dict(beam_size=2, max_length=8)
SLOW = {"texts": TEXTS[:4] * 2, "beam_size": 4, "max_length": 1000, "min_length": 1000}  # seconds of decoding


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "eng", seed=7)


@pytest.fixture(scope="module")
def translator(model_dir):
    return tformer.Translator(str(model_dir), **OPTS)


@pytest.fixture(scope="module")
def slow_translator(tmp_path_factory):
    """Untrained, 1024 positions: a request can ask for seconds of forced decoding."""
    directory = tt.build_marian_dir(tmp_path_factory, "eng_slow", seed=7, max_positions=1024, train_steps=0)
    return tformer.Translator(str(directory), beam_size=2, max_length=8)


def client(translator, **limits):
    return TestClient(create_app(translator, ServeLimits(scheduler="engine", **limits)))




def _expected(translator, body):
    """What Translator.translate gives for this request alone, as the API's JSON."""
    options = {k: v for k, v in body.items() if k not in ("texts", "stream")}
    results = translator.translate_batch(body["texts"], **options)
    n_best = options.get("num_hypotheses", 1)
    out = {"translations": [r.texts if n_best > 1 else r.texts[0] for r in results]}
    if body.get("return_scores"):
        out["scores"] = [list(r.scores) if n_best > 1 else r.scores[0] for r in results]
    return out


MIX = [
    {"texts": TEXTS[:2]},
    {"texts": TEXTS[:1], "beam_size": 1},
    {"texts": TEXTS[1:4], "beam_size": 3, "num_hypotheses": 2},
    {"texts": TEXTS[:3], "do_sample": True, "seed": 3, "sampling_topk": 5, "beam_size": 1},
    {"texts": [TEXTS[3]], "max_length": 5, "return_scores": True},
    {"texts": TEXTS[2:4], "beam_size": 4, "length_penalty": 0.5, "no_repeat_ngram_size": 2},
    {"texts": TEXTS[:4], "beam_size": 1, "min_length": 6, "repetition_penalty": 1.3},
]


def test_requests_with_any_options_equal_translate_alone(translator):
    with client(translator) as c:
        replies = run_concurrently(lambda b: c.post("/translate", json=b), MIX * 2)
        for body, r in zip(MIX * 2, replies):
            assert r.status_code == 200, r.text
            assert r.json() == _expected(translator, body), body
        # (the engine's counters settle just after the last reply)
        stats = wait_for(lambda: (s := c.get("/stats").json())["completed"] == 2 * len(MIX) and
                          s["running_requests"] == 0 and s, "the engine to settle")
    assert stats["scheduler"] == "engine" and stats["requests"] == 2 * len(MIX)
    assert stats["texts"] == 2 * sum(len(b["texts"]) for b in MIX) and stats["failed_requests"] == 0
    assert stats["completed"] == 2 * len(MIX) and stats["encoder_tokens"] > 0, stats
    assert stats["queue_length"] == 0 and stats["running_requests"] == 0 and stats["running_rows"] == 0, stats
    assert stats["max_rows"] == 256 and stats["block_size"] == 16 and stats["max_batch_tokens"] == 8192
    for field in ("steps", "rows_last_step", "rows_per_step_mean", "kv_blocks_total", "kv_blocks_used",
                  "kv_bytes_total", "kv_bytes_used", "kv_block_size"):
        assert stats[field] >= 0, field
    assert 0.0 <= stats["kv_pool_use"] <= 1.0 and stats["kv_blocks_used"] == 0, stats
    assert stats["steps"] > 0 and stats["rows_per_step_mean"] > 1.0, stats  # the requests shared steps


def test_knobs_reach_the_engine_and_bad_ones_are_named(translator):
    with client(translator, max_rows=9, block_size=4, kv_cache_mb=2.0, max_batch_tokens=64) as c:
        assert c.post("/translate", json=MIX[2]).json() == _expected(translator, MIX[2])  # 3 texts x beam 3
        too_wide = c.post("/translate", json={**MIX[2], "beam_size": 4})  # 12 rows: never fits
        assert too_wide.status_code == 400 and "more than max_rows 9" in too_wide.json()["detail"], too_wide.text
        stats = c.get("/stats").json()
    assert (stats["max_rows"], stats["block_size"], stats["kv_cache_mb"], stats["max_batch_tokens"]) == (9, 4, 2.0, 64)
    assert stats["kv_block_size"] == 4, stats
    for knob, value in (("max_rows", 0), ("block_size", 0), ("max_batch_tokens", -1), ("kv_cache_mb", 0.0),
                         ("update_wait_steps", -1)):
        with pytest.raises(ValueError, match=knob):
            create_app(translator, ServeLimits(scheduler="engine", **{knob: value}))
    with pytest.raises(ValueError, match="scheduler must be 'engine' or 'request', got 'fast'"):
        create_app(translator, ServeLimits(scheduler="fast"))

    class Minimal:  # translate_batch only: fine for the request scheduler, not for the engine
        def translate_batch(self, texts, **options):
            return translator.translate_batch(texts, **options)

    with pytest.raises(TypeError, match="the engine scheduler needs a tformer.Translator"):
        create_app(Minimal(), ServeLimits(scheduler="engine"))


def _events(reply):
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return sse.parse(reply.content)


@pytest.mark.parametrize("body", [
    {"texts": TEXTS[:3], "beam_size": 1},
    {"texts": TEXTS[:2], "beam_size": 3, "num_hypotheses": 2, "return_scores": True},
    {"texts": TEXTS[1:3], "do_sample": True, "seed": 11, "beam_size": 1},
])
def test_stream_sends_growing_partials_then_the_reply(translator, body):
    with client(translator) as c:
        events = _events(c.post("/translate", json={**body, "stream": True}))
        plain = c.post("/translate", json=body).json()
    assert plain == _expected(translator, body)
    assert [name for name, _ in events[:-1]] == ["partial"] * (len(events) - 1) and events[-1] == ("done", plain)
    best = [t if isinstance(t, str) else t[0] for t in plain["translations"]]
    for index in range(len(body["texts"])):
        texts = [data["text"] for _, data in events[:-1] if data["index"] == index]
        assert texts, f"no partial translation of sentence {index}"
        assert all(a != b for a, b in zip(texts, texts[1:])), texts  # an event only when the text changed
        assert texts[-1] == best[index], (texts, best[index])  # the last partial is the whole best translation


def test_stream_refusals_are_plain_replies_and_later_errors_are_events(slow_translator):
    with client(slow_translator) as c:
        r = c.post("/translate", json={"texts": ["a"], "target_lang": "de", "stream": True})
        assert r.status_code == 400 and "translates into one language" in r.json()["detail"], r.text
        r = c.post("/translate", json={"texts": [], "stream": True})
        assert r.status_code == 422 and r.json()["detail"] == "texts is empty: send at least one sentence"
        events = _events(c.post("/translate", json={**SLOW, "timeout_ms": 300, "stream": True}))
        assert events[-1][0] == "error" and events[-1][1]["status"] == 504, events[-1]
        assert events[-1][1]["detail"].startswith("the deadline of 300 ms passed") and \
            events[-1][1]["detail"].endswith("(timeout_ms 300)"), events[-1]
        assert all(name == "partial" for name, _ in events[:-1])
        stats = wait_for(lambda: (s := c.get("/stats").json())["cancelled_texts"] == 8 and s["running_rows"] == 0
                          and s, "rows cancelled and freed")
        assert stats["expired_requests"] == 1 and stats["streamed_requests"] == 1 and stats["failed_requests"] == 1


def test_deadline_gets_504_and_frees_the_rows(slow_translator):
    with client(slow_translator) as c:
        t0 = time.perf_counter()
        r = c.post("/translate", json={**SLOW, "timeout_ms": 300})
        assert r.status_code == 504 and "deadline of 300 ms passed" in r.json()["detail"], r.text
        stats = wait_for(lambda: (s := c.get("/stats").json())["cancelled_texts"] == 8 and s["running_rows"] == 0
                          and s, "rows cancelled and freed")
        assert stats["expired_requests"] == 1, stats
        assert time.perf_counter() - t0 < 5.0  # far less than the forced 1000 tokens would take


def test_a_short_request_does_not_wait_for_a_long_one(slow_translator):
    with client(slow_translator) as c:
        slow = {}
        worker = threading.Thread(target=lambda: slow.setdefault("reply", c.post("/translate", json=SLOW)))
        worker.start()
        wait_for(lambda: c.get("/stats").json()["running_rows"] >= 32, "the long request to run")
        quick = c.post("/translate", json={"texts": TEXTS[:1], "beam_size": 1, "max_length": 8})
        assert quick.status_code == 200
        assert quick.json() == _expected(slow_translator, {"texts": TEXTS[:1], "beam_size": 1, "max_length": 8})
        assert worker.is_alive(), "the long request ended first: the test proves nothing"
        stats = c.get("/stats").json()
        assert stats["rows_per_step_mean"] > 1.0, stats
        worker.join()  # its own result (or its deadline, on a loaded machine) is not the point here
        assert slow["reply"].status_code in (200, 504), slow["reply"].text


def test_overload_gets_503(slow_translator):
    body = {"texts": TEXTS[:2], "beam_size": 1, "max_length": 300, "min_length": 300}
    with client(slow_translator, max_pending_texts=3) as c:
        codes = sorted(r.status_code for r in run_concurrently(lambda b: c.post("/translate", json=b), [body] * 4))
        assert 503 in codes and 200 in codes, codes
        stats = c.get("/stats").json()
    assert stats["rejected_overload"] == codes.count(503), stats


def test_request_scheduler_streams_the_reply_only(translator):
    body = {"texts": TEXTS[:2], "beam_size": 1}
    with TestClient(create_app(translator, ServeLimits(scheduler="request"))) as c:
        events = _events(c.post("/translate", json={**body, "stream": True}))
        assert events == [("done", _expected(translator, body))]
        events = _events(c.post("/translate", json={"texts": ["a"], "beam_size": 2, "num_hypotheses": 3,
                                                    "stream": True}))
        assert events[0][0] == "error" and events[0][1]["status"] == 400 and "num_hypotheses" in events[0][1]["detail"]


def test_multilingual_requests_mix_target_languages(tmp_path):
    tok = tt.build_m2m100_tokenizer(tmp_path / "m2m_tok")
    directory = tt.build_m2m100_model(tmp_path / "m2m", tok, seed=5, langs=("fr", "en"))
    translator = tformer.Translator(str(directory), source_lang="fr", beam_size=2, max_length=10)
    bodies = [{"texts": TEXTS[:2], "target_lang": "en"}, {"texts": TEXTS[1:3], "target_lang": "de"},
              {"texts": TEXTS[:1], "target_lang": "es", "beam_size": 1}, {"texts": TEXTS[2:4]}]
    with client(translator) as c:
        for body, r in zip(bodies, run_concurrently(lambda b: c.post("/translate", json=b), bodies)):
            assert r.status_code == 200 and r.json() == _expected(translator, body), (body, r.text)
        events = _events(c.post("/translate", json={**bodies[1], "stream": True}))
        assert events[-1] == ("done", _expected(translator, bodies[1]))
        assert not any("__de__" in data["text"] for _, data in events[:-1]), events  # the forced token is no text
        r = c.post("/translate", json={"texts": TEXTS[:1], "target_lang": "xx"})
        assert r.status_code == 400 and "target_lang='xx' is not one of this model's languages" in r.json()["detail"]


# ---------------------------------------------------------------- the real server


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port, method, path, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, r.getheader("content-type"), r.read()
    finally:
        conn.close()


def _send_raw(port, body: dict) -> socket.socket:
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"POST /translate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    return s


def _stats(port):
    return json.loads(_request(port, "GET", "/stats")[2])


def test_tformer_serve_engine_command(tmp_path):
    """`tformer serve` (the engine by default) with engine flags; a streamed request and a plain
    one; two clients that disconnect mid-decoding have their rows freed."""
    tok = tt.build_marian_tokenizer(tmp_path / "tok")
    directory = tt.build_marian_model(tmp_path / "model", tok, seed=7, max_positions=1024, train_steps=0)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "TFORMER_API_KEY"}
    proc = subprocess.Popen([sys.executable, "-m", "tformer.cli", "serve", str(directory), "--port", str(port),
                             "--beam-size", "2", "--max-length", "8", "--max-rows", "100", "--block-size", "8",
                             "--update-wait-steps", "7",
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_server(port, proc, lambda: proc.stdout.read().decode())
        reference = tformer.Translator(str(directory), beam_size=2, max_length=8)
        body = {"texts": TEXTS[:2]}
        status, kind, data = _request(port, "POST", "/translate", json.dumps({**body, "stream": True}).encode())
        assert status == 200 and kind.startswith("text/event-stream")
        assert sse.parse(data)[-1] == ("done", _expected(reference, body))
        status, _, data = _request(port, "POST", "/translate", json.dumps(body).encode())
        assert status == 200 and json.loads(data) == _expected(reference, body)
        stats = _stats(port)
        assert stats["scheduler"] == "engine" and stats["max_rows"] == 100 and stats["kv_block_size"] == 8, stats
        assert stats["update_wait_steps"] == 7, stats

        before = _stats(port)
        clients = [_send_raw(port, {**SLOW, "beam_size": 1, "stream": True})]
        received = b""
        while b"event: partial" not in received:  # the stream's first event comes while it decodes
            received += clients[0].recv(4096)
        assert received.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in received, received
        assert _stats(port)["running_rows"] > 0
        clients.append(_send_raw(port, SLOW))
        wait_for(lambda: _stats(port)["requests"] == before["requests"] + 2, "both requests")
        time.sleep(0.5)
        t0 = time.time()
        for s in clients:
            s.close()
        stats = wait_for(lambda: (s := _stats(port))["cancelled_requests"] == before["cancelled_requests"] + 2
                          and s["running_rows"] == 0 and s["queue_length"] == 0 and s, "the rows to be freed")
        assert stats["cancelled_texts"] == before["cancelled_texts"] + 16, stats
        assert time.time() - t0 < 6.0  # not after the seconds the two requests would have taken
        status, _, data = _request(port, "POST", "/translate", json.dumps(body).encode())
        assert status == 200 and json.loads(data) == _expected(reference, body)
    finally:
        stop_process(proc)


def test_bad_engine_flag_stops_the_command(model_dir):
    r = subprocess.run([sys.executable, "-m", "tformer.cli", "serve", str(model_dir), "--max-rows", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "tformer serve: max_rows must be" in r.stderr, r.stderr
