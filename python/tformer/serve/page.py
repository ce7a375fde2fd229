"""The translation page of `tformer serve`: `GET /` answers page.html (one self-contained
file: inline CSS and JS, nothing fetched from elsewhere), `GET /info` what the page needs to
draw itself: the model, its languages, the default options and the server's limits.

The page holds no data, so it is served without the API key (guard.py lets `GET /` through);
`/info` and `/translate` need the key like every other endpoint, and their 401 is how the
page learns that it must ask for one.
"""
from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from .guard import PAGE_PATHS

PAGE_FILE = Path(__file__).with_name("page.html")

# The page may only talk to this server and run its own inline code: an injected script or
# stylesheet from elsewhere would be refused by the browser.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_T5_TASK = re.compile(r"^translation_(\w+?)_to_(\w+)$")


def model_info(translator, limits) -> dict:
    """GET /info: the model (its model_type and tokenizer family), the languages it takes
    (`source_languages` / `target_languages`, [] where it has none to choose), the defaults a
    request that leaves them out gets, and the limits of this server."""
    model = getattr(translator, "model", None)
    config = getattr(model, "config", None)
    tokenizer = getattr(translator, "tokenizer", None)
    defaults = dict(getattr(translator, "defaults", {}) or {})
    source, target = _languages(translator, tokenizer)
    source_default = getattr(translator, "source_lang", None) or getattr(tokenizer, "default_source_lang", None)
    return {
        "model": repr(model) if model is not None else None,
        "model_type": getattr(config, "model_type", None),
        "tokenizer": getattr(tokenizer, "family", None),
        "source_languages": source,
        "target_languages": target,
        "source_lang": source_default if source else None,
        "target_lang": getattr(translator, "target_lang", None),
        "beam_size": defaults.get("beam_size"),
        "max_length": defaults.get("max_length"),
        "max_beam_size": limits.max_beam_size,
        "max_chars": limits.max_chars,
        "max_texts": limits.max_texts,
        "streams": limits.scheduler == "engine",
    }


def _languages(translator, tokenizer):
    """(source languages, target languages) a request may name."""
    languages = list(getattr(tokenizer, "languages", None) or [])
    if languages:
        # M2M100 / NLLB tokenizers put a source-language token (they have a default one);
        # multilingual Marian only writes the target's >>code<<.
        has_source = getattr(tokenizer, "default_source_lang", None) is not None
        return (languages if has_source else []), languages
    pairs = [m.groups() for m in map(_T5_TASK.match, getattr(translator, "task_prefixes", None) or {}) if m]
    return sorted({s for s, _ in pairs}), sorted({t for _, t in pairs})  # T5: languages select the task


def add_page_routes(app: FastAPI, translator, limits) -> None:
    """Registers GET / (the page) and GET /info on `app`."""
    html = PAGE_FILE.read_text(encoding="utf-8")

    async def page():
        return HTMLResponse(html, headers=PAGE_HEADERS)

    for path in PAGE_PATHS:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    @app.get("/info")
    async def info():
        return model_info(translator, limits)
