"""`tformer serve` (tformer.serve): the HTTP API on a tiny Marian checkpoint with a real
tokenizer (built in test_translator), through FastAPI's TestClient, plus one start of the
real command on 127.0.0.1.

Checked: translations equal Translator.translate's, every 4xx path (malformed JSON,
missing/empty texts, too long / too many texts, oversized bodies with and without
Content-Length, bad option values, unknown fields), the API key, dynamic batching
(GET /stats counts requests and generate calls), and that a bad request never harms the
others or the server."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import tformer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from tformer.serve import ServeLimits, create_app  # noqa: E402

import test_translator as tt  # noqa: E402
from tf_testlib import stop_process  # noqa: E402

TEXTS = tt.TEXTS
OPTS = dict(beam_size=2, max_length=8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "serve", seed=7)


@pytest.fixture(scope="module")
def translator(model_dir):
    return tformer.Translator(str(model_dir), **OPTS)


def client(translator, **limits):
    return TestClient(create_app(translator, ServeLimits(**limits)))


def post(c, body, **kw):
    if isinstance(body, (dict, list)):
        return c.post("/translate", json=body, **kw)
    return c.post("/translate", content=body, headers={"content-type": "application/json", **kw.pop("headers", {})},
                  **kw)


def test_translations_equal_translator(translator):
    with client(translator) as c:
        r = post(c, {"texts": TEXTS})
        assert r.status_code == 200, r.text
        assert r.json() == {"translations": translator.translate(TEXTS)}
        r = post(c, {"texts": TEXTS[:2], "beam_size": 3, "max_length": 5, "num_hypotheses": 2})
        assert r.status_code == 200, r.text
        assert r.json()["translations"] == translator.translate(TEXTS[:2], beam_size=3, max_length=5,
                                                                num_hypotheses=2)
        r = post(c, {"texts": TEXTS[:1], "beam_size": 1, "return_scores": True})
        body = r.json()
        assert r.status_code == 200 and len(body["scores"]) == 1 and isinstance(body["scores"][0], float)
        assert c.get("/health").json()["status"] == "ok"
        assert "/translate" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("body,status,message", [
    (b'{"texts": ["a"', 422, "JSON decode error"),
    (b"", 422, "Field required"),
    ({}, 422, "texts: Field required"),
    ({"texts": []}, 422, "texts is empty"),
    ({"texts": ["ok", ""]}, 422, r"texts\[1\] is empty"),
    ({"texts": ["ok", "   "]}, 422, r"texts\[1\] is empty"),
    ({"texts": "Le chat."}, 422, "texts: Input should be a valid list"),
    ({"texts": ["Le chat.", 3]}, 422, "texts.1: Input should be a valid string"),
    ({"texts": ["x" * 101]}, 422, r"texts\[0\] has 101 characters > max_chars 100"),
    ({"texts": ["a"] * 5}, 422, "too many texts: 5 > max_texts 4"),
    ({"texts": ["a"], "beam_size": 0}, 422, "beam_size: Input should be greater than or equal to 1"),
    ({"texts": ["a"], "beam_size": "2"}, 422, "beam_size: Input should be a valid integer"),
    ({"texts": ["a"], "beam_size": 99}, 422, "beam_size 99 > the server's max_beam_size 16"),
    ({"texts": ["a"], "max_length": 10_000}, 422, "max_length 10000 > 63"),
    ({"texts": ["a"], "sampling_topp": 1.5}, 422, "sampling_topp: Input should be less than or equal to 1"),
    (b'{"texts": ["a"], "length_penalty": NaN}', 422, "length_penalty: Input should be a finite number"),
    ({"texts": ["a"], "num_beams": 2}, 422, "num_beams: Extra inputs are not permitted"),
    ({"texts": ["a"], "beam_size": 2, "num_hypotheses": 3}, 400, "num_hypotheses"),
    ({"texts": ["a"], "min_length": 9, "max_length": 8}, 400, "min_length"),
    ({"texts": ["a"], "target_lang": "de"}, 400, "translates into one language"),
    ({"texts": ["a"], "source_lang": "fr"}, 400, "no source-language tokens"),
])
def test_bad_requests_get_4xx_and_the_server_lives_on(translator, body, status, message):
    import re

    with client(translator, max_texts=4, max_chars=100) as c:
        r = post(c, body)
        assert r.status_code == status, r.text
        assert re.search(message, r.json()["detail"]), r.json()
        assert post(c, {"texts": TEXTS[:1]}).status_code == 200


def test_body_size_limit(translator):
    with client(translator, max_body_bytes=300) as c:
        r = post(c, {"texts": ["a" * 400]})
        assert r.status_code == 413 and "max_body_bytes 300" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit is counted on the stream
            yield b'{"texts": ["'
            for _ in range(10):
                yield b"a" * 50
            yield b'"]}'

        r = c.post("/translate", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "max_body_bytes 300" in r.json()["detail"]
        assert post(c, {"texts": TEXTS[:1]}).status_code == 200


def test_api_key(translator, monkeypatch):
    with client(translator, api_key="s3cret") as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic s3cret"}):
            r = c.post("/translate", json={"texts": ["a"]}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
            assert "API key" in r.json()["detail"]
        assert c.get("/health").status_code == 401
        assert c.get("/stats").status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/health", headers=ok).status_code == 200
        r = c.post("/translate", json={"texts": TEXTS[:2]}, headers=ok)
        assert r.status_code == 200 and r.json()["translations"] == translator.translate(TEXTS[:2])


def _concurrent(c, bodies):
    out = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def one(i):
        barrier.wait()
        out[i] = post(c, bodies[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_requests_are_batched(translator):
    bodies = [{"texts": [TEXTS[i % len(TEXTS)], TEXTS[(i + 1) % len(TEXTS)]]} for i in range(8)]
    with client(translator, batch_wait_ms=300, max_batch_size=64) as c:
        replies = _concurrent(c, bodies)
        for body, r in zip(bodies, replies):
            assert r.status_code == 200 and r.json()["translations"] == translator.translate(body["texts"])
        stats = c.get("/stats").json()
    assert stats["requests"] == 8 and stats["texts"] == 16
    assert stats["batches"] < 8 and stats["max_batch_requests"] >= 2, stats


def test_batches_respect_max_batch_size(translator):
    bodies = [{"texts": [t]} for t in TEXTS] * 2
    with client(translator, batch_wait_ms=300, max_batch_size=3) as c:
        replies = _concurrent(c, bodies)
        assert [r.json()["translations"][0] for r in replies] == translator.translate([b["texts"][0] for b in bodies])
        stats = c.get("/stats").json()
    assert stats["max_batch_texts"] <= 3 and stats["batches"] >= 4, stats


def test_batch_wait_zero_turns_batching_off(translator):
    with client(translator, batch_wait_ms=0) as c:
        replies = _concurrent(c, [{"texts": [t]} for t in TEXTS])
        assert all(r.status_code == 200 for r in replies)
        stats = c.get("/stats").json()
    assert stats["batches"] == stats["requests"] == len(TEXTS) and stats["max_batch_requests"] == 1


def test_requests_with_different_options_are_not_merged(translator):
    bodies = [{"texts": [TEXTS[0]], "beam_size": 1}, {"texts": [TEXTS[0]], "beam_size": 3}] * 3
    with client(translator, batch_wait_ms=300) as c:
        replies = _concurrent(c, bodies)
        for body, r in zip(bodies, replies):
            assert r.json()["translations"] == translator.translate(body["texts"], beam_size=body["beam_size"])
        stats = c.get("/stats").json()
    assert stats["batches"] >= 2, stats


def test_one_bad_text_fails_only_its_request(translator):
    """A text too long for the model's positions table (64) shares a batch with good
    requests: only its request fails (400), the others get their translations."""
    too_long = " ".join(["Le chat dort sur le canapé."] * 20)
    bodies = [{"texts": [TEXTS[i]]} for i in range(4)] + [{"texts": [too_long]}]
    with client(translator, batch_wait_ms=300, max_chars=5000) as c:
        replies = _concurrent(c, bodies)
        for body, r in zip(bodies[:4], replies[:4]):
            assert r.status_code == 200 and r.json()["translations"] == translator.translate(body["texts"])
        assert replies[4].status_code == 400, replies[4].text
        assert post(c, {"texts": TEXTS[:1]}).status_code == 200


def test_overload_gets_503(translator):
    with client(translator, max_pending_texts=2, batch_wait_ms=300) as c:
        replies = _concurrent(c, [{"texts": [t, t]} for t in TEXTS[:4]])
        codes = sorted(r.status_code for r in replies)
        assert 503 in codes and 200 in codes, codes
        assert c.get("/stats").json()["rejected_overload"] >= 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tformer_serve_command(model_dir):
    """The real thing: `tformer serve` in a subprocess on 127.0.0.1, one request, stopped."""
    port = _free_port()
    env = {**os.environ, "TFORMER_API_KEY": "k"}
    proc = subprocess.Popen([sys.executable, "-m", "tformer.cli", "serve", str(model_dir), "--port", str(port),
                             "--beam-size", "2", "--max-length", "8", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
            except urllib.error.HTTPError as e:
                assert e.code == 401  # up, and the key from the environment is required
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        req = urllib.request.Request(f"{base}/translate", data=json.dumps({"texts": TEXTS[:2]}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer k"})
        reply = json.loads(urllib.request.urlopen(req, timeout=30).read())
        expected = tformer.Translator(str(model_dir), beam_size=2, max_length=8).translate(TEXTS[:2])
        assert reply == {"translations": expected}
    finally:
        stop_process(proc)
