"""The HTTP service: FastAPI app around a Translator and a scheduler: the in-flight batching
engine (EngineScheduler, `tformer serve`'s default) or the request-level DynamicBatcher.

    POST /translate  {"texts": [...], "target_lang"?, "beam_size"?, "max_length"?, ...}
                     -> {"translations": [...]}  (+ "scores" with return_scores)
                     with "stream": true: server-sent events of the partial translations (sse.py)
    GET  /           -> the translation page (page.html), GET /info -> its model, languages, defaults
    GET  /health     -> {"status": "ok", ...}
    GET  /stats      -> requests, texts, and the scheduler's counters (rows per step, KV-pool use /
                        generate calls, batch sizes)
    GET  /docs, /openapi.json  (FastAPI)

Bad input never takes the server down: malformed JSON or fields -> 422, a text over
max_chars, more than max_texts texts, text that is not valid Unicode, or more work than
max_request_tokens (texts x beam_size x max_length) -> 422, a body over max_body_bytes ->
413, a body slower than body_timeout_s -> 408, option values generate rejects -> 400, a
missing or wrong API key -> 401, a Host header outside allowed_hosts -> 421, too much queued
work -> 503, a deadline (timeout_ms) passed -> 504. A client that disconnects has its work
dropped (queued) or its rows stopped (decoding). docs/SERVING.md has the whole list.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from . import sse
from .batcher import ClientDisconnected, DeadlineExceeded, DynamicBatcher, Overloaded
from .guard import GuardMiddleware
from .page import add_page_routes

if TYPE_CHECKING:
    from .engine_scheduler import EngineScheduler

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
    max_request_tokens: int = 1 << 17  # texts x beam_size x max_length of one request (0: no limit)
    request_timeout_ms: float = 60000.0  # a request's deadline: the default and the largest timeout_ms (0: none)
    body_timeout_s: float = 30.0      # the whole body must arrive within this (0: no deadline)
    allowed_hosts: Optional[Sequence[str]] = None  # Host names served ("*.x.org" patterns); None: any
    # "request": the request-level DynamicBatcher (max_batch_size, batch_wait_ms); "engine": in-flight
    # batching on a tformer.Engine (the knobs below; needs a tformer.Translator). `tformer serve`
    # defaults to "engine"; here "request" stays the default, so that existing callers keep theirs.
    scheduler: str = "request"
    max_rows: int = 256               # engine: decoder rows per step (beam requests: beam_size rows per text)
    max_batch_tokens: int = 8192      # engine: source tokens encoded per step for joining requests
    kv_cache_mb: Optional[float] = None  # engine: K/V block pool in MiB (None: the engine's default)
    block_size: int = 16              # engine: positions per K/V block
    large_request_every: int = 32     # engine: while a small request runs, larger ones step every N-th step
    small_request_rows: int = 4       # engine: rows (texts x beam) of a small request
    update_wait_steps: int = 1024     # engine: steps a weight update waits for running requests

    def engine_knobs(self) -> dict:
        """The fields above marked "engine:", as tformer.Engine's keyword arguments."""
        return {name: getattr(self, name) for name in ENGINE_KNOBS}


# ServeLimits' tformer.Engine knobs: `tformer serve` has an option of each name, create_app passes
# them on (EngineScheduler -> tformer.Engine) and /stats shows them. A new knob: a field above,
# its name here, its option in command.py.
ENGINE_KNOBS = ("max_rows", "max_batch_tokens", "kv_cache_mb", "block_size", "large_request_every",
                "small_request_rows", "update_wait_steps")


class TranslateRequest(BaseModel):
    """Texts to translate and generate options (docs/DECODING.md); unset options take the
    model's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    texts: list[str] = Field(description="sentences to translate, at least one")
    source_lang: Optional[str] = Field(None, description="source language (M2M100 'fr', NLLB 'fra_Latn')")
    target_lang: Optional[str] = Field(None, description="target language (M2M100 'en', NLLB 'eng_Latn', "
                                                         "multilingual opus-mt 'fra')")
    prefix: Optional[str] = Field(None, description="text put before every source (T5: 'translate English to "
                                                    "German: '); not with task")
    task: Optional[str] = Field(None, description="a task of the model's config.json task_specific_params (T5: "
                                                  "'translation_en_to_de'), whose prefix is used")
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
    timeout_ms: Optional[int] = Field(None, ge=1, description="deadline in milliseconds (default and largest: "
                                                              "the server's request_timeout_ms); 504 when it passes")
    stream: bool = Field(False, description="answer with server-sent events (text/event-stream): 'partial' events "
                                            "{index, text} as each sentence's translation grows, then 'done' with "
                                            "the response JSON, or 'error' {status, detail}")


class TranslateResponse(BaseModel):
    translations: list[Union[str, list[str]]]
    scores: Optional[list[Union[float, list[float], None]]] = None


_TRANSLATOR_KEYS = ("source_lang", "target_lang", "prefix", "task")


def create_app(translator, limits: ServeLimits | None = None) -> FastAPI:
    """The FastAPI app serving `translator` (a tformer.Translator or anything with its
    translate_batch). Run it with uvicorn (`tformer serve`) or FastAPI's TestClient."""
    limits = limits or ServeLimits()
    max_length_limit = max(1, int(getattr(translator, "max_positions", 1 << 30)) - 1)

    defaults = dict(getattr(translator, "defaults", {}) or {})

    def run_batch(texts, options):
        options = dict(options)
        langs = {k: options.pop(k, None) for k in _TRANSLATOR_KEYS}
        return translator.translate_batch(texts, max_batch_size=limits.max_batch_size, **langs, **options)

    batcher: EngineScheduler | DynamicBatcher
    if limits.scheduler == "engine":
        from .engine_scheduler import EngineScheduler

        batcher = EngineScheduler(translator, max_pending_texts=limits.max_pending_texts, **limits.engine_knobs())
    elif limits.scheduler == "request":
        batcher = DynamicBatcher(run_batch, max_batch_size=limits.max_batch_size,
                                 batch_wait_ms=limits.batch_wait_ms, max_pending_texts=limits.max_pending_texts,
                                 pass_cancel=_takes_cancel(translator))
    else:
        raise ValueError(f"scheduler must be 'engine' or 'request', got {limits.scheduler!r}")
    biggest = _request_tokens(limits.max_texts, None, None, defaults)
    if limits.max_request_tokens and biggest > limits.max_request_tokens:
        log.warning("a request of max_texts %d texts with the default beam_size and max_length costs %d tokens, "
                    "more than max_request_tokens %d: such requests get 422", limits.max_texts, biggest,
                    limits.max_request_tokens)

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
        if limits.scheduler == "engine":
            settings = limits.engine_knobs()
        else:
            settings = {"max_batch_size": limits.max_batch_size, "batch_wait_ms": limits.batch_wait_ms}
        return {**batcher.stats.snapshot(), "scheduler": limits.scheduler, **settings,
                "max_request_tokens": limits.max_request_tokens, "request_timeout_ms": limits.request_timeout_ms}

    @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True)
    async def translate(req: TranslateRequest, request: Request):
        _check_limits(req, limits, max_length_limit, defaults)
        options = req.model_dump(exclude_none=True, exclude={"texts", "return_scores", "timeout_ms", "stream"})
        if req.return_scores:
            options["return_scores"] = True
        timeout_ms = req.timeout_ms or limits.request_timeout_ms
        timeout = timeout_ms / 1000.0 if timeout_ms else None
        n_best = req.num_hypotheses or defaults.get("num_hypotheses", 1)
        if req.stream:
            return _stream_reply(batcher, req, options, timeout, timeout_ms, n_best)

        async def disconnected():  # returns once the client has closed its connection
            while (await request.receive())["type"] != "http.disconnect":
                pass

        try:
            results = await batcher.submit(req.texts, options, timeout=timeout, disconnected=disconnected)
        except Exception as e:  # noqa: BLE001 - logged by the scheduler; the server lives on
            status, detail, headers = _error_reply(e, timeout_ms)
            raise HTTPException(status_code=status, detail=detail, headers=headers) from None
        return _response_body(results, n_best, req.return_scores)

    add_page_routes(app, translator, limits)  # GET / (the translation page) and GET /info
    app.add_middleware(GuardMiddleware, limits=limits)
    return app


def _error_reply(e: Exception, timeout_ms):
    """(status, detail, headers) of the reply to a translation that failed with `e`."""
    if isinstance(e, (ValueError, TypeError)):
        return 400, str(e), None
    if isinstance(e, Overloaded):
        return 503, f"server busy: {e}", {"Retry-After": "1"}
    if isinstance(e, DeadlineExceeded):
        return 504, f"{e} (timeout_ms {timeout_ms:g})", None
    if isinstance(e, ClientDisconnected):  # nobody reads this reply; 499 as nginx logs it
        return 499, "client closed the request", None
    return 500, "internal error while translating", None


def _response_body(results, n_best, return_scores) -> dict:
    out = {"translations": [r.texts if n_best > 1 else r.texts[0] for r in results]}
    if return_scores:
        out["scores"] = [list(r.scores) if n_best > 1 else (r.scores[0] if len(r.scores) else None)
                         for r in results]
    return out


def _stream_reply(scheduler, req, options, timeout, timeout_ms, n_best):
    """The event stream of a `"stream": true` request. With the engine, options it refuses
    get their usual JSON 400 before the stream starts; later failures are `error` events.
    The request scheduler has no partial results: its stream is the `done` event alone."""
    if hasattr(scheduler, "open_stream"):
        try:
            events = scheduler.open_stream(req.texts, options, timeout=timeout)
        except Exception as e:  # noqa: BLE001
            status, detail, headers = _error_reply(e, timeout_ms)
            raise HTTPException(status_code=status, detail=detail, headers=headers) from None
    else:
        async def events():
            yield "done", await scheduler.submit(req.texts, options, timeout=timeout)
        events = events()

    async def body():
        try:
            async for kind, *data in events:
                if kind == "partial":
                    yield sse.partial(*data)
                else:
                    yield sse.done(_response_body(data[0], n_best, req.return_scores))
        except Exception as e:  # noqa: BLE001 - the API's error, as an event (the status line went out already)
            status, detail, _ = _error_reply(e, timeout_ms)
            yield sse.error(status, detail)
        finally:  # the client went away (this generator closed early): the scheduler cancels the rows
            await events.aclose()

    return StreamingResponse(body(), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)


def _check_limits(req, limits, max_length_limit, defaults):
    if not req.texts:
        raise HTTPException(422, "texts is empty: send at least one sentence")
    if len(req.texts) > limits.max_texts:
        raise HTTPException(422, f"too many texts: {len(req.texts)} > max_texts {limits.max_texts}")
    for i, text in enumerate(req.texts):
        if not text.strip():
            raise HTTPException(422, f"texts[{i}] is empty (or only whitespace)")
        if len(text) > limits.max_chars:
            raise HTTPException(422, f"texts[{i}] has {len(text)} characters > max_chars {limits.max_chars}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800" (JSON allows the escape)
            raise HTTPException(422, f"texts[{i}] is not valid Unicode text: {e.reason} at character {e.start} "
                                     "(a lone UTF-16 surrogate)") from None
    if req.prefix is not None and len(req.prefix) > limits.max_chars:
        raise HTTPException(422, f"prefix has {len(req.prefix)} characters > max_chars {limits.max_chars}")
    if req.beam_size is not None and req.beam_size > limits.max_beam_size:
        raise HTTPException(422, f"beam_size {req.beam_size} > the server's max_beam_size {limits.max_beam_size}")
    if req.max_length is not None and req.max_length > max_length_limit:
        raise HTTPException(422, f"max_length {req.max_length} > {max_length_limit}, what the model's "
                                 "positions table allows")
    cost = _request_tokens(len(req.texts), req.beam_size, req.max_length, defaults)
    if limits.max_request_tokens and cost > limits.max_request_tokens:
        beam, length = _beam_and_length(req.beam_size, req.max_length, defaults)
        raise HTTPException(422, f"request too large: {len(req.texts)} texts x beam_size {beam} x max_length {length} "
                                 f"= {cost} > the server's max_request_tokens {limits.max_request_tokens} (send fewer "
                                 "texts, or a smaller beam_size or max_length)")
    if req.timeout_ms is not None and limits.request_timeout_ms and req.timeout_ms > limits.request_timeout_ms:
        raise HTTPException(422, f"timeout_ms {req.timeout_ms} > the server's request_timeout_ms "
                                 f"{limits.request_timeout_ms:g}")


def _beam_and_length(beam_size, max_length, defaults):
    beam = beam_size or int(defaults.get("beam_size", 4) or 1)
    length = max_length or int(defaults.get("max_length", 256) or 1)
    return beam, length


def _request_tokens(n_texts, beam_size, max_length, defaults) -> int:
    """What max_request_tokens bounds: decoder rows x steps (the KV cache and the work)."""
    beam, length = _beam_and_length(beam_size, max_length, defaults)
    return n_texts * beam * length


def _takes_cancel(translator) -> bool:
    """Whether translator.translate_batch accepts cancel= (tformer.Translator does)."""
    try:
        params = inspect.signature(translator.translate_batch).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return False
    return any(p.name == "cancel" or p.kind is p.VAR_KEYWORD for p in params)


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
