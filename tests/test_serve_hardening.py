"""`tformer serve` under hostile or careless clients (issue 13): a poisoned text fails only its
own request; a request's cost is bounded (max_request_tokens) and has a deadline (timeout_ms,
504, its rows stop being decoded); the work of a client that disconnects is dropped; Host
names outside the allowed ones get 421; idle and half-open connections are closed so that,
under `ulimit -n 256`, 300 idle sockets cannot lock new clients out.

The model is a tiny untrained Marian with a 1024-position table, so that one request can ask
for seconds of decoding (8 texts x beam 4 x 1000 forced tokens: about 9 s on one core)."""

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
from tformer.serve.command import _api_key  # noqa: E402
from tformer.serve.guard import default_allowed_hosts, host_allowed, host_name, parse_allowed_hosts  # noqa: E402

import test_translator as tt  # noqa: E402
from tf_testlib import run_concurrently, stop_process, wait_for, wait_for_server  # noqa: E402

TEXTS = tt.TEXTS
SLOW = {"texts": TEXTS[:4] * 2, "beam_size": 4, "max_length": 1000, "min_length": 1000}  # ~9 s uncancelled
SLOW_TOKENS = 8 * 4 * 1000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "hard", seed=7, max_positions=1024, train_steps=0)


@pytest.fixture(scope="module")
def translator(model_dir):
    return tformer.Translator(str(model_dir), beam_size=2, max_length=8)


def client(translator, **limits):
    return TestClient(create_app(translator, ServeLimits(**limits)))




# ---------------------------------------------------------------- in-process (TestClient)


class PoisonTranslator:
    """The real translator, except that a batch holding "POISON" fails with a RuntimeError,
    as a tokenizer failing on one client's text would."""

    def __init__(self, inner):
        self.inner = inner
        self.defaults, self.max_positions, self.model = inner.defaults, inner.max_positions, inner.model

    def translate_batch(self, texts, **options):
        if any("POISON" in t for t in texts):
            raise RuntimeError("the tokenizer gave up")
        return self.inner.translate_batch(texts, **options)


def test_a_failing_text_fails_only_its_own_request(translator):
    bodies = [{"texts": [TEXTS[i % 4]]} for i in range(8)] + [{"texts": ["Le POISON."]}]
    with client(PoisonTranslator(translator), batch_wait_ms=300) as c:
        replies = run_concurrently(lambda b: c.post("/translate", json=b), bodies)
        for body, r in zip(bodies[:8], replies[:8]):
            assert r.status_code == 200, r.text
            assert r.json()["translations"] == translator.translate(body["texts"])
        assert replies[8].status_code == 500 and replies[8].json()["detail"] == "internal error while translating"
        stats = c.get("/stats").json()
    assert stats["max_batch_requests"] >= 2, stats  # the poison did share a batch with good requests


def test_text_that_is_not_unicode_gets_422(translator):
    with client(translator) as c:
        r = c.post("/translate", content=b'{"texts": ["Le chat.", "x\\ud800y"]}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("texts[1] is not valid Unicode text"), r.json()
        assert c.post("/translate", json={"texts": TEXTS[:1]}).status_code == 200


def test_request_cost_budget(translator):
    with client(translator, max_texts=64) as c:
        r = c.post("/translate", json={"texts": ["a"] * 64, "beam_size": 16, "max_length": 511, "min_length": 511})
        assert r.status_code == 422
        assert r.json()["detail"] == ("request too large: 64 texts x beam_size 16 x max_length 511 = 523264 > the "
                                      "server's max_request_tokens 131072 (send fewer texts, or a smaller beam_size "
                                      "or max_length)")
    with client(translator, max_request_tokens=40) as c:  # defaults count too: beam 2 x max_length 8 here
        r = c.post("/translate", json={"texts": TEXTS[:3]})
        assert r.status_code == 422 and "3 texts x beam_size 2 x max_length 8 = 48 > the server's " \
                                          "max_request_tokens 40" in r.json()["detail"]
        assert c.post("/translate", json={"texts": TEXTS[:2]}).status_code == 200
        assert c.get("/stats").json()["max_request_tokens"] == 40


def test_deadline_gets_504_and_stops_decoding(translator):
    with client(translator, request_timeout_ms=20000) as c:
        r = c.post("/translate", json={"texts": ["a"], "timeout_ms": 20001})
        assert r.status_code == 422 and r.json()["detail"] == "timeout_ms 20001 > the server's request_timeout_ms 20000"
        t0 = time.perf_counter()
        slow, quick = run_concurrently(lambda b: c.post("/translate", json=b),
                                  [{**SLOW, "timeout_ms": 300}, {"texts": TEXTS[:1], "timeout_ms": 15000}])
        assert slow.status_code == 504, slow.text
        assert "deadline of 300 ms passed" in slow.json()["detail"]
        assert quick.status_code == 200 and quick.json()["translations"] == translator.translate(TEXTS[:1])
        stats = wait_for(lambda: (s := c.get("/stats").json())["cancelled_texts"] == 8 and s, "rows cancelled")
        assert stats["expired_requests"] == 1 and stats["requests"] == 2, stats
        # The 8 texts stopped part way: far less than the ~9 s of their forced 1000 tokens.
        assert stats["generate_busy_seconds"] < 0.5 * (time.perf_counter() - t0) + 4.0, stats


def test_expired_while_queued_is_dropped_before_decoding(translator):
    """The second request (deadline 300 ms) waits behind the first (deadline 1 s) and
    expires first: it is dropped without ever reaching generate."""
    replies = {}
    with client(translator, batch_wait_ms=0) as c:
        first = threading.Thread(target=lambda: replies.setdefault("first", c.post(
            "/translate", json={**SLOW, "timeout_ms": 1000})))
        first.start()
        wait_for(lambda: c.get("/stats").json()["requests"] == 1, "the first request")
        second = c.post("/translate", json={**SLOW, "timeout_ms": 300})
        first.join()
        assert (replies["first"].status_code, second.status_code) == (504, 504)
        stats = wait_for(lambda: (s := c.get("/stats").json())["batches"] + s["dropped_before_decode"] == 2 and s,
                          "both requests to leave the queue")
        assert stats["dropped_before_decode"] == 1 and stats["batches"] == 1, stats
        assert stats["expired_requests"] == 2 and stats["cancelled_texts"] == 8, stats


def test_allowed_hosts(translator):
    with client(translator, allowed_hosts=default_allowed_hosts("127.0.0.1")) as c:
        r = c.get("/health")  # TestClient sends Host: testserver
        assert r.status_code == 421 and r.json()["detail"].startswith("Host 'testserver' is not served here")
        for host in ("localhost", "localhost:8000", "127.0.0.1:80", "[::1]:8000", "LocalHost."):
            assert c.get("/health", headers={"host": host}).status_code == 200, host
        r = c.post("/translate", json={"texts": TEXTS[:1]}, headers={"host": "evil.example:8000"})
        assert r.status_code == 421
    assert default_allowed_hosts("0.0.0.0") is None
    assert parse_allowed_hosts("API.example.com, *.example.org") == ("api.example.com", "*.example.org")
    assert host_allowed("a.example.org", ("*.example.org",)) and not host_allowed("example.org.evil", ("*.example.org",))
    assert host_name(b"[::1]") == "[::1]" and host_name(b"Example.COM:443") == "example.com"
    with pytest.raises(ValueError, match="--allowed-hosts is empty"):
        parse_allowed_hosts(" , ")


def test_api_key_from_the_environment_first(monkeypatch, capsys):
    monkeypatch.delenv("TFORMER_API_KEY", raising=False)
    assert _api_key(None) is None
    monkeypatch.setenv("TFORMER_API_KEY", "from-env")
    assert _api_key(None) == "from-env" and capsys.readouterr().err == ""
    assert _api_key("from-flag") == "from-env"
    assert "--api-key ignored, TFORMER_API_KEY is set" in capsys.readouterr().err
    monkeypatch.delenv("TFORMER_API_KEY")
    assert _api_key("from-flag") == "from-flag"
    assert "shows the key to anyone who can list processes" in capsys.readouterr().err


# ---------------------------------------------------------------- the real server


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """`tformer serve --scheduler request` under `ulimit -n 256`, with 1 s header, body and
    keep-alive deadlines (the request-level batcher: its queue is what the disconnect test
    checks; test_serve_engine.py has the engine's)."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve_log") / "server.log", "w+b")
    command = (f"ulimit -n 256; exec {sys.executable} -m tformer.cli serve {model_dir} --port {port} "
               "--scheduler request --beam-size 2 --max-length 8 --header-timeout 1 --keep-alive-timeout 1 --body-timeout 1 --log-level warning")
    env = {k: v for k, v in os.environ.items() if k != "TFORMER_API_KEY"}
    proc = subprocess.Popen(["bash", "-c", command], env=env, stdout=log, stderr=subprocess.STDOUT)

    def output():
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        wait_for_server(port, proc, output)
        yield port
    finally:
        stop_process(proc)
        log.close()


def _request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def _stats(port):
    return _request(port, "GET", "/stats")[1]


def test_server_refuses_other_host_names(server):
    status, body = _request(server, "GET", "/health", headers={"Host": "attacker.example"})
    assert status == 421 and "attacker.example" in body["detail"]
    assert _request(server, "GET", "/health", headers={"Host": f"localhost:{server}"})[0] == 200


def test_server_poisoned_text_among_good_ones(server):
    good = [json.dumps({"texts": [TEXTS[i % 4]]}).encode() for i in range(8)]
    poison = b'{"texts": ["Le chat \\ud800 dort."]}'
    replies = run_concurrently(lambda body: _request(server, "POST", "/translate", body), good + [poison])
    assert [status for status, _ in replies[:8]] == [200] * 8, replies
    assert replies[8][0] == 422 and replies[8][1]["detail"].startswith("texts[0] is not valid Unicode"), replies[8]


def _send_raw(port, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /translate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return s


def test_server_answers_a_slow_body_with_408(server):
    s = socket.create_connection(("127.0.0.1", server), timeout=8)
    try:
        s.sendall(b"POST /translate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 40\r\n\r\n{\"texts\": [")  # and then nothing
        reply = b""
        while chunk := s.recv(4096):  # the server closes the connection after its reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b"did not arrive within body_timeout_s 1" in reply
    finally:
        s.close()


def test_server_drops_the_work_of_disconnected_clients(server):
    before = _stats(server)
    first = _send_raw(server, SLOW)  # decoding: its rows are stopped
    wait_for(lambda: _stats(server)["requests"] == before["requests"] + 1, "the first request")
    time.sleep(0.5)  # in generate now (batch_wait_ms 5)
    second = _send_raw(server, SLOW)  # queued behind the first: never decoded
    wait_for(lambda: _stats(server)["requests"] == before["requests"] + 2, "the second request")
    t0 = time.time()
    first.close()
    second.close()
    stats = wait_for(lambda: (s := _stats(server))["cancelled_requests"] == before["cancelled_requests"] + 2 and
                      s["dropped_before_decode"] == before["dropped_before_decode"] + 1 and
                      s["cancelled_texts"] == before["cancelled_texts"] + 8 and s, "the work to be dropped")
    assert stats["batches"] == before["batches"] + 1, stats
    status, body = _request(server, "POST", "/translate", json.dumps({"texts": TEXTS[:1]}).encode())
    assert status == 200, body
    assert time.time() - t0 < 6.0  # not after the ~9 s (x2) the two requests would have taken


def test_server_serves_new_clients_despite_300_idle_sockets(server):
    idle = []
    try:
        for i in range(300):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", server))
            if i % 2:
                s.send(b"POST /translate HTTP/1.1\r\nHost: localhost\r\n")  # half a request head
            idle.append(s)
        time.sleep(0.2)
        t0 = time.time()
        status, _ = _request(server, "GET", "/health", timeout=15)
        assert status == 200
        assert time.time() - t0 < 10.0
    finally:
        for s in idle:
            s.close()
