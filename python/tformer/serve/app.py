"""The HTTP service: FastAPI app around a Translator and a DynamicBatcher.

    POST /translate  {"texts": [...], "target_lang"?, "beam_size"?, "max_length"?, ...}
                     -> {"translations": [...]}  (+ "scores" with return_scores)
    GET  /health     -> {"status": "ok", ...}
    GET  /stats      -> requests, texts, batches (generate calls), batch sizes
    GET  /docs, /openapi.json  (FastAPI)

Bad input never takes the server down: malformed JSON or fields -> 422, a text over
max_chars or more than max_texts texts -> 422, a body over max_body_bytes -> 413, option
values generate rejects -> 400, a missing or wrong API key -> 401, too much queued
work -> 503.
"""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Optional, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .batcher import DynamicBatcher, Overloaded

log = logging.getLogger("tformer.serve")


@dataclass
class ServeLimits:
    max_batch_size: int = 32          # sentences per generate call
    batch_wait_ms: float = 5.0        # how long the first request waits for others (0: no batching)
    max_texts: int = 64               # texts per request
    max_chars: int = 2000             # characters per text
    max_body_bytes: int = 1 << 20     # request body
    max_beam_size: int = 16
    max_pending_texts: int = 4096     # queued sentences before 503
    api_key: Optional[str] = None     # every request needs "Authorization: Bearer <key>"


class TranslateRequest(BaseModel):
    """Texts to translate and generate options (docs/DECODING.md); unset options take the
    model's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    texts: list[str] = Field(description="sentences to translate, at least one")
    source_lang: Optional[str] = Field(None, description="source language (M2M100 'fr', NLLB 'fra_Latn')")
    target_lang: Optional[str] = Field(None, description="target language (M2M100 'en', NLLB 'eng_Latn', "
                                                         "multilingual opus-mt 'fra')")
    beam_size: Optional[int] = Field(None, ge=1)
    max_length: Optional[int] = Field(None, ge=1, description="generated tokens, EOS included")
    min_length: Optional[int] = Field(None, ge=0)
    length_penalty: Optional[float] = None
    num_hypotheses: Optional[int] = Field(None, ge=1, description="n-best size (<= beam_size)")
    no_repeat_ngram_size: Optional[int] = Field(None, ge=0)
    repetition_penalty: Optional[float] = Field(None, gt=0)
    early_stopping: Optional[bool] = None
    do_sample: Optional[bool] = None
    sampling_topk: Optional[int] = Field(None, ge=0)
    sampling_topp: Optional[float] = Field(None, gt=0, le=1)
    sampling_temperature: Optional[float] = Field(None, gt=0)
    seed: Optional[int] = Field(None, ge=0)
    return_scores: bool = False


class TranslateResponse(BaseModel):
    translations: list[Union[str, list[str]]]
    scores: Optional[list[Union[float, list[float], None]]] = None


_TRANSLATOR_KEYS = ("source_lang", "target_lang")


def create_app(translator, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI app serving `translator` (a tformer.Translator or anything with its
    translate_batch). Run it with uvicorn (`tformer serve`) or FastAPI's TestClient."""
    limits = limits or ServeLimits()
    max_length_limit = max(1, int(getattr(translator, "max_positions", 1 << 30)) - 1)

    def run_batch(texts, options):
        options = dict(options)
        langs = {k: options.pop(k, None) for k in _TRANSLATOR_KEYS}
        return translator.translate_batch(texts, max_batch_size=limits.max_batch_size, **langs, **options)

    batcher = DynamicBatcher(run_batch, max_batch_size=limits.max_batch_size, batch_wait_ms=limits.batch_wait_ms,
                             max_pending_texts=limits.max_pending_texts)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()
        batcher.close()

    app = FastAPI(title="tformer translation server", version=_version(), lifespan=lifespan,
                  description="Machine translation with tformer (docs/DECODING.md).")
    app.state.translator, app.state.batcher, app.state.limits = translator, batcher, limits

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        # Only where and what: echoing the input back could be large, or NaN (not JSON).
        errors = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": _readable(errors), "errors": errors})

    @app.get("/health")
    async def health():
        model = getattr(translator, "model", None)
        return {"status": "ok", "model": repr(model) if model is not None else None,
                "device": getattr(model, "device", None), "dtype": getattr(model, "dtype", None)}

    @app.get("/stats")
    async def stats():
        return {**batcher.stats.snapshot(), "max_batch_size": limits.max_batch_size,
                "batch_wait_ms": limits.batch_wait_ms}

    @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True)
    async def translate(req: TranslateRequest):
        _check_limits(req, limits, max_length_limit)
        options = req.model_dump(exclude_none=True, exclude={"texts", "return_scores"})
        if req.return_scores:
            options["return_scores"] = True
        try:
            results = await batcher.submit(req.texts, options)
        except (ValueError, TypeError) as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        except Overloaded as e:
            raise HTTPException(status_code=503, detail=f"server busy: {e}", headers={"Retry-After": "1"}) from None
        except Exception:  # noqa: BLE001 - logged by the batcher; the client gets a 500, the server lives on
            raise HTTPException(status_code=500, detail="internal error while translating") from None
        n_best = req.num_hypotheses or getattr(translator, "defaults", {}).get("num_hypotheses", 1)
        out = {"translations": [r.texts if n_best > 1 else r.texts[0] for r in results]}
        if req.return_scores:
            out["scores"] = [list(r.scores) if n_best > 1 else (r.scores[0] if len(r.scores) else None)
                             for r in results]
        return out

    app.add_middleware(GuardMiddleware, limits=limits)
    return app


def _check_limits(req, limits, max_length_limit):
    if not req.texts:
        raise HTTPException(422, "texts is empty: send at least one sentence")
    if len(req.texts) > limits.max_texts:
        raise HTTPException(422, f"too many texts: {len(req.texts)} > max_texts {limits.max_texts}")
    for i, text in enumerate(req.texts):
        if not text.strip():
            raise HTTPException(422, f"texts[{i}] is empty (or only whitespace)")
        if len(text) > limits.max_chars:
            raise HTTPException(422, f"texts[{i}] has {len(text)} characters > max_chars {limits.max_chars}")
    if req.beam_size is not None and req.beam_size > limits.max_beam_size:
        raise HTTPException(422, f"beam_size {req.beam_size} > the server's max_beam_size {limits.max_beam_size}")
    if req.max_length is not None and req.max_length > max_length_limit:
        raise HTTPException(422, f"max_length {req.max_length} > {max_length_limit}, what the model's "
                                 "positions table allows")


def _readable(errors) -> str:
    parts = []
    for e in errors:
        loc = list(e.get("loc", ()))
        where = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def _version():
    try:
        from .. import __version__
        return __version__
    except Exception:  # noqa: BLE001
        return "unknown"


class GuardMiddleware:
    """ASGI wrapper run before FastAPI: the API key (401) and the body size (413), checked
    on the raw request so that an oversized body is never parsed."""

    def __init__(self, app, limits: ServeLimits):
        self.app, self.limits = app, limits
        self._key = limits.api_key.encode() if limits.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self._key is not None:
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
                return await _reply(send, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                    [(b"www-authenticate", b"Bearer")])
        limit = self.limits.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    return await _reply(send, 413, f"request body of {int(length)} bytes > max_body_bytes {limit}")
            except ValueError:
                return await _reply(send, 400, "invalid Content-Length header")
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return await _reply(send, 413, f"request body over max_body_bytes {limit}")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

            async def receive_replayed():
                return replay.pop() if replay else await receive()

            return await self.app(scope, receive_replayed, send)
        return await self.app(scope, receive, send)


async def _reply(send, status, detail, extra_headers=()):
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": body})
