"""EngineScheduler: `tformer serve --scheduler engine`. Every request goes straight to one
tformer.Engine (in-flight batching: before each decoder step finished rows leave and queued
requests join, whatever their options), so a short request never waits for a long one to
end; each request's translations equal what Translator.translate gives for it alone.

Same interface as the request-level DynamicBatcher (start / stop / close / submit / stats),
plus open_stream for `"stream": true`. Each request carries a tformer.CancelToken: its
deadline, fired too when its client disconnects, so that its rows leave at the next step."""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from ..translator import _without_prefix
from .batcher import ClientDisconnected, DeadlineExceeded, Overloaded, _Job, wait_for_job

log = logging.getLogger("tformer.serve")

_LANGUAGE_KEYS = ("source_lang", "target_lang", "prefix", "task")
_COUNTERS = ("requests", "texts", "streamed_requests", "failed_requests", "rejected_overload", "expired_requests",
             "cancelled_requests", "cancelled_texts")


class EngineStats:
    """The server's counters (today's /stats fields that apply to the engine) plus the
    engine's own: rows per step, queue length, K/V pool use."""

    def __init__(self, engine_stats):
        self._lock = threading.Lock()
        self._engine_stats = engine_stats  # () -> dict, or {} while no engine runs
        self._counts = dict.fromkeys(_COUNTERS, 0)

    def count(self, field, n=1):
        with self._lock:
            self._counts[field] += n

    def snapshot(self) -> dict:
        with self._lock:
            out = dict(self._counts)
        engine = self._engine_stats()
        total = engine.get("kv_bytes_total", 0)
        return {**out, **engine, "kv_pool_use": round(engine.get("kv_bytes_used", 0) / total, 6) if total else 0.0}


class EngineScheduler:
    """Runs a tformer.Translator's requests on a tformer.Engine over its model (the engine
    knobs: tformer.Engine's keyword arguments, checked by it). max_pending_texts bounds the
    sentences queued or decoding: beyond it submit raises Overloaded (503)."""

    def __init__(self, translator, *, max_pending_texts=4096, **engine_knobs):
        if not all(hasattr(translator, name) for name in ("model", "tokenizer", "_request", "_results")):
            raise TypeError("the engine scheduler needs a tformer.Translator (its model and tokenizer), got "
                            f"{type(translator).__name__}: use scheduler='request' for other translators")
        self._translator = translator
        self._knobs = engine_knobs
        self.max_pending_texts = int(max_pending_texts)
        self._engine = self._new_engine()  # now, so that a bad knob is a ValueError of create_app
        self._loop: asyncio.AbstractEventLoop | None = None  # the lifespan's, set by start()
        self._jobs = set()  # submitted, not yet answered
        self._pending_texts = 0
        self._stopping = False
        self.stats = EngineStats(lambda: self._engine.stats() if self._engine is not None else {})

    def _new_engine(self):
        from ..engine import Engine

        return Engine(self._translator.model, **self._knobs)

    # ------------------------------------------------------------------ lifecycle

    def start(self):
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new lifespan
            self._loop, self._stopping = loop, False
        if self._engine is None:  # closed by an earlier lifespan
            self._engine = self._new_engine()

    async def stop(self):
        self._stopping = True
        for job in list(self._jobs):  # their rows leave at the next step; close() ends the rest
            job.cancel.cancel()

    def close(self):
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    # ------------------------------------------------------------------ requests

    async def submit(self, texts, options: dict, timeout=None, disconnected=None):
        """One request's TranslationResults (one per text) once the engine finished them.
        timeout: seconds -> DeadlineExceeded; disconnected: a coroutine function returning
        when the client goes away -> ClientDisconnected. Either way its rows leave the engine
        at the next step."""
        self.start()
        job = self._submit(texts, options, timeout, None)
        try:
            await wait_for_job(job, self._loop, disconnected)
            return self._outcome(job)
        except Exception as e:
            self._count_failure(job, e)
            raise
        finally:
            self._release(job)

    def open_stream(self, texts, options: dict, timeout=None):
        """Submits a request now (raising what submit raises for bad options or overload) and
        returns an async iterator of ("partial", index, text so far) whenever a sentence's
        translation grows, then ("done", results). Closing the iterator early (the client
        went away) cancels the request."""
        self.start()
        queue: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()  # (source, token); None: done
        loop = self._loop
        assert loop is not None  # start() set it

        def on_token(source, token):  # the engine thread, GIL held: just hand it to the event loop
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (source, token))
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

        job = self._submit(texts, options, timeout, on_token)
        self.stats.count("streamed_requests")
        job.future.add_done_callback(lambda _: queue.put_nowait(None))  # after every token: same loop, FIFO
        return self._events(job, queue, job.key)

    async def _events(self, job, queue, prefix):
        tokens: list[list[int]] = [[] for _ in job.texts]
        texts = [""] * len(job.texts)
        end = None if job.timeout is None else job.enqueued + job.timeout
        finished = False
        try:
            while True:
                left = None if end is None else max(0.0, end - time.perf_counter())
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except asyncio.TimeoutError:
                    job.cancel.cancel()
                    raise job.cancel_error() from None
                changed = set()
                while item is not None:  # all that arrived: one event per changed sentence
                    source, token = item
                    tokens[source].append(token)
                    changed.add(source)
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                for source in sorted(changed):
                    text = self._partial_text(tokens[source], prefix)
                    if text is not None and text != texts[source]:
                        texts[source] = text
                        yield "partial", source, text
                if item is None:
                    results = self._outcome(job)
                    finished = True
                    yield "done", results
                    return
        except Exception as e:  # not GeneratorExit / CancelledError: those are the client going away
            finished = True
            self._count_failure(job, e)
            raise
        finally:
            if not finished:  # closed early: the client went away
                job.disconnected = True
                job.cancel.cancel()
                self.stats.count("cancelled_requests")
            self._release(job)

    # ------------------------------------------------------------------ the Translator's steps

    def _submit(self, texts, options, timeout, on_token):
        """The _Job whose future is the engine request's (its key: the target-language prefix)."""
        n = len(texts)
        if self._pending_texts + n > self.max_pending_texts:
            self.stats.count("rejected_overload")
            raise Overloaded(f"{self._pending_texts} sentences are already queued or decoding "
                             f"(limit {self.max_pending_texts})")
        self.stats.count("requests")
        self.stats.count("texts", n)
        try:
            return self._submit_checked(texts, options, timeout, on_token)
        except (ValueError, TypeError):
            self.stats.count("failed_requests")
            raise

    def _submit_checked(self, texts, options, timeout, on_token):
        n = len(texts)
        options = dict(options)
        languages = [options.pop(k, None) for k in _LANGUAGE_KEYS]
        # The Translator's own steps (as translate_batch): tokens, its defaults, the target-language prefix.
        src_ids, options, prefix = self._translator._request(texts, *languages, options)
        job = _Job(list(texts), options, list(prefix or []), None, timeout)
        future = self._engine.submit(src_ids, cancel=job.cancel, on_token=on_token, **options)
        future.add_done_callback(self._count_cancelled_texts)
        job.future = asyncio.wrap_future(future, loop=self._loop)
        # Released when the engine is done with it too: a stream whose body never started
        # (its client gone at once) must not hold its sentences in max_pending_texts forever.
        job.future.add_done_callback(lambda _: self._release(job))
        self._jobs.add(job)
        self._pending_texts += n
        return job

    def _count_cancelled_texts(self, future):
        if not future.cancelled() and future.exception() is None:
            cut = sum(1 for r in future.result() if r.cancelled)
            if cut:
                self.stats.count("cancelled_texts", cut)

    def _outcome(self, job):
        """The job's TranslationResults; raises its error, or why it was cancelled."""
        results = job.future.result()
        if any(r.cancelled for r in results):
            if self._stopping and not job.disconnected:
                raise RuntimeError("the server is shutting down")
            raise job.cancel_error()
        return self._translator._results(results, job.key)

    def _partial_text(self, tokens, prefix):
        """The text of a growing hypothesis; None while it is only the forced target-language
        token(s), or ends inside a multi-byte character (U+FFFD until the rest arrives)."""
        if len(tokens) <= len(prefix) and prefix[:len(tokens)] == tokens:
            return None
        text = self._translator.tokenizer.decode([_without_prefix(tokens, prefix)])[0]
        return None if text.endswith("\ufffd") else text

    def _count_failure(self, job, e):
        if isinstance(e, DeadlineExceeded):
            self.stats.count("expired_requests")
        elif isinstance(e, ClientDisconnected):
            self.stats.count("cancelled_requests")
        elif isinstance(e, Exception):
            self.stats.count("failed_requests")
            if not isinstance(e, (ValueError, TypeError)):
                log.error("translate failed", exc_info=e)

    def _release(self, job):
        if job in self._jobs:
            self._jobs.discard(job)
            self._pending_texts -= len(job.texts)
            if not job.future.done():  # gave up waiting: the rows leave at the next step, and the
                job.cancel.cancel()    # engine's cancelled results still count in cancelled_texts

