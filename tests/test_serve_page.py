"""`tformer serve`'s translation page (GET /, python/tformer/serve/page.html) and GET /info.

In-process (TestClient): the page is served whole, without the API key, with a policy that
lets it load nothing from elsewhere; /info's languages and defaults are the Translator's.
In a real browser (headless Chromium over the DevTools protocol, tests/headless_chromium.py)
against the real `tformer serve` on 127.0.0.1: the translation that appears equals the API's
and Translator.translate's, it grows while the server streams, the API's error messages are
shown, the API key is asked for, and a multilingual model's languages can be chosen.

TFORMER_PAGE_SCREENSHOT=docs/serve_page.png keeps the screenshot taken after a translation.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import tformer

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from tformer.serve import ServeLimits, create_app  # noqa: E402
from tformer.serve.page import PAGE_HEADERS, model_info  # noqa: E402

import test_translator as tt  # noqa: E402
from headless_chromium import Browser, find_chromium  # noqa: E402
from tf_testlib import stop_process, wait_for  # noqa: E402

KEY = "page-test-key-7f3a"
# Long translations (at least 20 tokens): a greedy stream has many partial events to show.
GENERATION = {"min_length": 20, "max_length": 30}


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return tt.build_marian_dir(tmp_path_factory, "page", seed=7, generation=GENERATION)


@pytest.fixture(scope="module")
def m2m_dir(tmp_path_factory):
    tok = tt.build_m2m100_tokenizer(tmp_path_factory.mktemp("page_m2m_tok") / "m2m")
    return tt.build_m2m100_model(tmp_path_factory.mktemp("page_m2m"), tok, seed=5, langs=("fr", "en"))


# ---------------------------------------------------------------- in-process


def test_page_is_served_whole_without_the_key(marian_dir):
    translator = tformer.Translator(str(marian_dir))
    with TestClient(create_app(translator, ServeLimits(scheduler="engine", api_key=KEY))) as c:
        r = c.get("/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
        for name, value in PAGE_HEADERS.items():
            assert r.headers[name] == value
        assert "default-src 'none'" in r.headers["content-security-policy"]
        html = r.text
        assert html.startswith("<!DOCTYPE html>") and "<script>" in html and "<style>" in html
        for external in ("http://", "https://", "src=", "href=", "@import", "url("):
            assert external not in html, f"the page refers to something outside it: {external}"
        assert c.get("/index.html").text == html
        # Everything else still needs the key: the page holds no data.
        for method, path in (("get", "/info"), ("get", "/health"), ("post", "/")):
            assert getattr(c, method)(path).status_code == 401, (method, path)
        info = c.get("/info", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert info["model_type"] == "marian" and info["tokenizer"] == "marian"
    assert info["source_languages"] == info["target_languages"] == [] and info["source_lang"] is None
    assert info["max_length"] == translator.defaults["max_length"]
    assert info["beam_size"] == translator.defaults.get("beam_size")
    assert (info["max_beam_size"], info["max_chars"], info["max_texts"], info["streams"]) == (16, 2000, 64, True)


def test_info_lists_a_multilingual_models_languages(m2m_dir):
    translator = tformer.Translator(str(m2m_dir), source_lang="fr", beam_size=3)
    with TestClient(create_app(translator, ServeLimits(scheduler="request", max_beam_size=5))) as c:
        info = c.get("/info").json()
    languages = translator.tokenizer.languages
    assert len(languages) == 100 and {"fr", "en", "de"} <= set(languages)
    assert info["source_languages"] == info["target_languages"] == languages
    assert (info["source_lang"], info["target_lang"], info["beam_size"]) == ("fr", None, 3)
    assert (info["model_type"], info["max_beam_size"], info["streams"]) == ("m2m_100", 5, False)


def test_info_of_a_multilingual_marian_and_of_any_translator():
    class MultiMarian:  # a Marian tokenizer with >>code<< target tokens: no source language
        family, languages = "marian", ["deu", "fra"]

    class T5Like:  # T5: no language tokens; the languages select a task prefix
        tokenizer = type("Tok", (), {"family": "t5", "languages": []})()
        task_prefixes = {"translation_en_to_de": "...", "translation_en_to_fr": "...", "summarization": "..."}

    limits = ServeLimits()
    marian = type("Marian", (), {"tokenizer": MultiMarian(), "target_lang": "fra"})()
    info = model_info(marian, limits)
    assert (info["source_languages"], info["target_languages"], info["target_lang"]) == ([], ["deu", "fra"], "fra")
    info = model_info(T5Like(), limits)
    assert (info["source_languages"], info["target_languages"]) == (["en"], ["de", "fr"])
    info = model_info(object(), limits)  # anything with a translate_batch: no model to describe
    assert info["model"] is None and info["source_languages"] == info["target_languages"] == []


# ---------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary, reason = find_chromium()
    if binary is None:
        pytest.skip(reason)
    pytest.importorskip("websocket", reason="the DevTools protocol client: pip install websocket-client")
    b = Browser(binary, tmp_path_factory.mktemp("chromium_profile"))
    yield b
    b.close()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port, body, key=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        conn.request("POST", "/translate", body=json.dumps(body).encode(), headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


class Server:
    """`tformer serve MODEL_DIR ARGS` on a free loopback port, until stop()."""

    def __init__(self, directory, *args, key=None):
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "TFORMER_API_KEY"}
        if key:
            env["TFORMER_API_KEY"] = key
        self.log = tempfile.TemporaryFile()  # not a pipe: one nobody reads blocks the server once full
        self.proc = subprocess.Popen([sys.executable, "-m", "tformer.cli", "serve", str(directory), "--port",
                                      str(self.port), "--log-level", "warning", *args], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        end = time.time() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise AssertionError("tformer serve stopped: " + self.log.read().decode(errors="replace"))
            assert time.time() < end, "tformer serve did not start in 90 s"
            time.sleep(0.2)
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self):
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def marian_server(marian_dir):
    server = Server(marian_dir, "--beam-size", "1", "--max-chars", "60")
    yield server
    server.stop()


@pytest.fixture
def page_of(browser):
    pages = []

    def open_page(url):
        pages.append(browser.new_page(url))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()


# Records what the output box showed, and in which state, at every change.
RECORD_OUTPUT = """(() => {
  window.seen = [];
  const out = document.getElementById('output');
  new MutationObserver(() => window.seen.push([out.textContent, out.dataset.state]))
    .observe(out, {childList: true, characterData: true, subtree: true, attributes: true});
})()"""


def _translate_in_page(page, text):
    page.type_into("#source", text)
    page.evaluate(RECORD_OUTPUT)
    page.click("#translate")
    state = page.wait_for("document.getElementById('output').dataset.state !== 'streaming' && "
                          "document.getElementById('output').dataset.state", "the translation to end", timeout=60)
    return state, page.evaluate("document.getElementById('output').textContent")


def _error(page):
    return page.evaluate("(() => { const e = document.getElementById('error'); return e.hidden ? '' : e.textContent; })()")


def test_page_shows_the_translation_as_it_streams(page_of, marian_server, marian_dir, tmp_path):
    page = page_of(marian_server.url)
    page.wait_for("document.getElementById('model').textContent.startsWith('marian')", "/info to be read")
    assert page.evaluate("document.getElementById('beam').value") == "1"  # the server's --beam-size
    assert page.evaluate("document.getElementById('source-box').hidden && "
                         "document.getElementById('target-box').hidden")  # one-language model: no selectors
    texts = tt.TEXTS[:2]
    state, shown = _translate_in_page(page, f"{texts[0]}\n\n{texts[1]}")
    status, api = _post(marian_server.port, {"texts": texts})
    reference = tformer.Translator(str(marian_dir), beam_size=1).translate(texts)
    assert status == 200 and api["translations"] == reference
    assert state == "done" and shown == f"{reference[0]}\n\n{reference[1]}", (shown, reference)
    assert _error(page) == "" and page.evaluate("document.getElementById('status').textContent").startswith("2 sentences in ")
    seen = page.evaluate("window.seen")
    partial = [text for text, s in seen if s == "streaming" and text.strip() and text != shown]
    assert partial, f"no partial translation was shown before the end: {seen}"

    shot = os.environ.get("TFORMER_PAGE_SCREENSHOT") or str(tmp_path / "page.png")
    page.screenshot(shot)
    assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    # Beam size 2 from the page: the answer of a beam-2 request.
    page.type_into("#beam", "2")
    state, shown = _translate_in_page(page, texts[1])
    assert state == "done" and shown == tformer.Translator(str(marian_dir), beam_size=2).translate([texts[1]])[0]


def test_page_shows_the_apis_error_messages(page_of, marian_server):
    page = page_of(marian_server.url)
    page.wait_for("document.getElementById('model').textContent.startsWith('marian')", "/info to be read")
    long_text = "Le chat dort sur le canapé rouge de la grand-mère, tous les jours." * 2
    status, api = _post(marian_server.port, {"texts": [long_text], "beam_size": 1})
    assert status == 422 and "max_chars 60" in api["detail"]
    state, shown = _translate_in_page(page, long_text)
    assert state == "error" and shown == "" and _error(page) == f"422: {api['detail']}"
    page.type_into("#beam", "17")
    status, api = _post(marian_server.port, {"texts": ["Le chat."], "beam_size": 17})
    assert status == 422 and "max_beam_size 16" in api["detail"]
    _translate_in_page(page, "Le chat.")
    assert _error(page) == f"422: {api['detail']}"


def test_page_shows_an_error_that_ends_the_stream(page_of, marian_dir):
    """A deadline that passes while decoding: the stream's `error` event, shown as the
    message the plain request gets."""
    server = Server(marian_dir, "--request-timeout-ms", "1")
    try:
        status, api = _post(server.port, {"texts": tt.TEXTS[:1]})
        assert status == 504 and api["detail"].startswith("the deadline of 1 ms passed")
        page = page_of(server.url)
        page.wait_for("document.getElementById('model').textContent.startsWith('marian')", "/info to be read")
        state, _ = _translate_in_page(page, tt.TEXTS[0])
        assert state == "error" and _error(page) == f"504: {api['detail']}"
    finally:
        server.stop()


def test_stop_cancels_the_translation(page_of, tmp_path):
    """Stop closes the stream: the page says so, and the server frees the request's rows."""
    tok = tt.build_marian_tokenizer(tmp_path / "tok")
    directory = tt.build_marian_model(tmp_path / "slow", tok, seed=7, max_positions=1024, train_steps=0,
                                      generation={"min_length": 1000, "max_length": 1000})  # seconds of decoding
    server = Server(directory, "--beam-size", "1")
    try:
        page = page_of(server.url)
        page.wait_for("document.getElementById('model').textContent.startsWith('marian')", "/info to be read")
        page.type_into("#source", "\n".join(tt.TEXTS[:4] * 2))
        page.click("#translate")
        page.wait_for("document.getElementById('output').textContent.trim().length > 0", "the first tokens")
        assert page.evaluate("document.getElementById('output').dataset.state") == "streaming"
        page.click("#stop")
        page.wait_for("document.getElementById('output').dataset.state === 'stopped'", "the page to stop")
        assert _error(page) == "stopped: the server cancels the rest"

        def stats():
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("GET", "/stats")
                return json.loads(conn.getresponse().read())
            finally:
                conn.close()
        wait_for(lambda: (s := stats())["cancelled_requests"] == 1 and s["running_rows"] == 0, "the rows to be freed")
    finally:
        server.stop()


def test_page_asks_for_the_key_and_offers_the_languages(page_of, m2m_dir):
    server = Server(m2m_dir, "--source-lang", "fr", "--beam-size", "2", "--max-length", "10", key=KEY)
    try:
        status, refused = _post(server.port, {"texts": ["Le chat."]})
        assert status == 401
        page = page_of(server.url)
        page.wait_for("!document.getElementById('keybox').hidden", "the page to ask for the key")
        assert _error(page) == f"401: {refused['detail']}"
        assert page.evaluate("document.getElementById('source-box').hidden")  # nothing known before the key

        page.evaluate("document.getElementById('error').hidden = true")
        page.type_into("#key", "wrong-key")
        page.click("#usekey")
        page.wait_for("!document.getElementById('error').hidden", "the wrong key's answer")
        assert _error(page) == f"401: {refused['detail']}"

        page.type_into("#key", KEY)
        page.click("#usekey")
        page.wait_for("!document.getElementById('source-box').hidden", "the languages")
        assert _error(page) == ""
        translator = tformer.Translator(str(m2m_dir), source_lang="fr", beam_size=2, max_length=10)
        languages = translator.tokenizer.languages
        options = "Array.from(document.getElementById('{}').options).map(o => o.value)"
        assert page.evaluate(options.format("source-lang")) == languages
        assert page.evaluate(options.format("target-lang")) == [""] + languages  # "" : the model's default
        assert page.evaluate("document.getElementById('source-lang').value") == "fr"

        page.evaluate("document.getElementById('target-lang').value = 'de'")
        texts = tt.TEXTS[:2]
        state, shown = _translate_in_page(page, "\n".join(texts))
        status, api = _post(server.port, {"texts": texts, "source_lang": "fr", "target_lang": "de"}, key=KEY)
        reference = translator.translate(texts, target_lang="de")
        assert status == 200 and api["translations"] == reference
        assert state == "done" and shown == "\n".join(reference) and _error(page) == ""
    finally:
        server.stop()
