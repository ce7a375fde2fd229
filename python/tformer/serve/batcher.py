"""Dynamic batching: requests that arrive within `batch_wait_ms` of the first one are merged
into one `translate_batch` call (up to `max_batch_size` sentences), run on one worker
thread (generate releases the GIL, so the event loop keeps accepting requests meanwhile),
and each request gets its own slice of the results back.

Only requests with the same options (languages, beam size, lengths, ...) are merged;
sampling requests never are, so that a seed gives the same output however the traffic
falls. With `batch_wait_ms=0` batching is off: one request per generate call.

Each request carries a tformer.CancelToken (its deadline, and cancelled when its client
disconnects), handed to generate as the token of each of its texts: a cancelled request's
rows stop being decoded, a batch whose requests are all cancelled stops, and a request
cancelled while queued is dropped before its batch runs. A failed batch of several
requests is rerun one request at a time, so that a failure touches its own request only."""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._native import _core

log = logging.getLogger("tformer.serve")


class Overloaded(Exception):
    """More sentences are waiting than `max_pending_texts`."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its translation was done."""


class ClientDisconnected(Exception):
    """The client went away before its translation was done."""


class _Job:
    __slots__ = ("texts", "options", "key", "future", "enqueued", "cancel", "timeout", "disconnected")

    def __init__(self, texts, options, key, future, timeout):
        self.texts, self.options, self.key, self.future = texts, options, key, future
        self.enqueued = time.perf_counter()
        self.timeout = timeout
        self.cancel = _core.CancelToken(timeout)
        self.disconnected = False

    def cancel_error(self) -> Exception:
        if self.disconnected or self.timeout is None:
            return ClientDisconnected("the client disconnected")
        return DeadlineExceeded(f"the deadline of {self.timeout * 1000:.0f} ms passed before the translation was done")


class BatchStats:
    """Counters behind GET /stats (read and written under one lock)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = self.texts = self.batches = self.batched_texts = 0
        self.max_batch_texts = self.max_batch_requests = 0
        self.failed_requests = self.rejected_overload = 0
        self.expired_requests = self.cancelled_requests = self.dropped_before_decode = self.cancelled_texts = 0
        self.batch_requests_histogram: collections.Counter[int] = collections.Counter()
        self.busy_seconds = 0.0

    def add_batch(self, n_requests, n_texts, seconds):
        with self._lock:
            self.batches += 1
            self.batched_texts += n_texts
            self.max_batch_texts = max(self.max_batch_texts, n_texts)
            self.max_batch_requests = max(self.max_batch_requests, n_requests)
            self.batch_requests_histogram[n_requests] += 1
            self.busy_seconds += seconds

    def count(self, field, n=1):
        with self._lock:
            setattr(self, field, getattr(self, field) + n)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests, "texts": self.texts, "batches": self.batches,
                "mean_batch_texts": round(self.batched_texts / self.batches, 3) if self.batches else 0.0,
                "max_batch_texts": self.max_batch_texts, "max_batch_requests": self.max_batch_requests,
                "batch_requests_histogram": {str(k): v for k, v in sorted(self.batch_requests_histogram.items())},
                "failed_requests": self.failed_requests, "rejected_overload": self.rejected_overload,
                "expired_requests": self.expired_requests, "cancelled_requests": self.cancelled_requests,
                "dropped_before_decode": self.dropped_before_decode, "cancelled_texts": self.cancelled_texts,
                "generate_busy_seconds": round(self.busy_seconds, 6),
            }


class DynamicBatcher:
    """translate(texts, options) -> list of results, called on one worker thread. With
    pass_cancel, options carries "cancel": one tformer.CancelToken per text (generate's
    cancel=), and results whose `.cancelled` is true fail their request."""

    def __init__(self, translate, max_batch_size=32, batch_wait_ms=5.0, max_pending_texts=4096, pass_cancel=True):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {batch_wait_ms}")
        self._translate = translate
        self._pass_cancel = bool(pass_cancel)
        self.max_batch_size = int(max_batch_size)
        self.batch_wait = float(batch_wait_ms) / 1000.0
        self.max_pending_texts = int(max_pending_texts)
        self.stats = BatchStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tformer-generate")
        # made by start() on the running loop
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._carry: _Job | None = None
        self._pending_texts = 0
        self._unique = itertools.count()
        self._running = []  # the jobs of the generate call in progress

    # ------------------------------------------------------------------ lifecycle

    def start(self):
        """Starts the batching task on the running event loop (idempotent per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        self._loop = loop
        self._queue = asyncio.Queue()
        self._carry = None
        self._pending_texts = 0
        self._task = loop.create_task(self._run(), name="tformer-batcher")

    async def stop(self):
        for job in self._running:  # let the generate thread finish now
            job.cancel.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        pending = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._carry = None

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ requests

    async def submit(self, texts, options: dict, timeout=None, disconnected=None):
        """Queues one request; returns its results (one per text) once its batch ran.

        timeout: seconds (None: none) -> DeadlineExceeded when they pass first.
        disconnected: a coroutine function that returns when the client goes away ->
        ClientDisconnected. Either way the request's rows stop being decoded."""
        self.start()
        n = len(texts)
        if self._pending_texts + n > self.max_pending_texts:
            self.stats.count("rejected_overload")
            raise Overloaded(f"{self._pending_texts} sentences are already waiting (limit {self.max_pending_texts})")
        key = _options_key(options)
        if options.get("do_sample") or self.batch_wait == 0:
            key = (key, next(self._unique))  # never merged with another request
        assert self._loop is not None and self._queue is not None  # start() made them
        job = _Job(list(texts), dict(options), key, self._loop.create_future(), timeout)
        self._pending_texts += n
        self.stats.count("requests")
        self.stats.count("texts", n)
        self._queue.put_nowait(job)
        try:
            await self._wait(job, disconnected)
            return job.future.result()
        except DeadlineExceeded:
            self.stats.count("expired_requests")
            raise
        except ClientDisconnected:
            self.stats.count("cancelled_requests")
            raise
        except Exception:
            self.stats.count("failed_requests")
            raise
        finally:
            if not job.future.done():  # gave up (deadline, disconnect, or this task was cancelled)
                job.cancel.cancel()
                job.future.cancel()

    async def _wait(self, job, disconnected):
        await wait_for_job(job, self._loop, disconnected)

    # ------------------------------------------------------------------ the loop

    async def _run(self):
        while True:
            batch = await self._collect()
            self._pending_texts -= sum(len(j.texts) for j in batch)
            groups: collections.OrderedDict[Any, list[_Job]] = collections.OrderedDict()  # by options key
            for job in batch:
                groups.setdefault(job.key, []).append(job)
            for jobs in groups.values():
                await self._execute(jobs)

    async def _collect(self):
        queue = self._queue
        assert queue is not None  # this runs in the task start() made with the queue
        first = self._carry if self._carry is not None else await queue.get()
        self._carry = None
        batch, n = [first], len(first.texts)
        if self.batch_wait == 0:
            return batch
        deadline = first.enqueued + self.batch_wait
        while n < self.max_batch_size:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if n + len(job.texts) > self.max_batch_size:
                self._carry = job  # first of the next batch
                break
            batch.append(job)
            n += len(job.texts)
        return batch

    async def _execute(self, jobs):
        live = []
        for job in jobs:  # requests expired or abandoned while queued never reach generate
            if job.future.done() or job.cancel.cancelled:
                self.stats.count("dropped_before_decode")
                _fail(job, job.cancel_error())
            else:
                live.append(job)
        if not live:
            return
        texts = [t for j in live for t in j.texts]
        options = live[0].options
        if self._pass_cancel:
            options = {**options, "cancel": [j.cancel for j in live for _ in j.texts]}
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        self._running = live
        try:
            results = await loop.run_in_executor(self._executor, self._translate, texts, options)
        except Exception as e:  # noqa: BLE001 - reported to the waiting requests, never kills the loop
            if len(live) > 1:  # one request's text may be at fault: rerun each alone so only it fails
                for job in live:
                    await self._execute([job])
            else:
                if not isinstance(e, (ValueError, TypeError)):
                    log.error("translate failed", exc_info=e)
                _fail(live[0], e)
            return
        finally:
            self._running = []
            self.stats.add_batch(len(live), len(texts), time.perf_counter() - t0)
        start = 0
        for job in live:
            end = start + len(job.texts)
            mine = results[start:end]
            cut = sum(1 for r in mine if getattr(r, "cancelled", False))
            if cut:
                self.stats.count("cancelled_texts", cut)
                _fail(job, job.cancel_error())
            elif not job.future.done():
                job.future.set_result(mine)
            start = end


def _fail(job, error):
    if not job.future.done():
        job.future.set_exception(error)


def _options_key(options: dict):
    def freeze(v):
        if isinstance(v, (list, tuple)):
            return tuple(freeze(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((k, freeze(x)) for k, x in v.items()))
        return v

    return freeze(options)


async def wait_for_job(job, loop, disconnected):
    """Until job.future is done, the job's deadline passes (DeadlineExceeded) or the client
    disconnects (ClientDisconnected); either of the last two cancels job.cancel. job: a _Job
    (the engine scheduler's jobs are _Jobs too)."""
    watch = loop.create_task(disconnected()) if disconnected is not None else None
    end = None if job.timeout is None else job.enqueued + job.timeout
    try:
        while not job.future.done():
            waiters = [job.future] if watch is None else [job.future, watch]
            left = None if end is None else max(0.0, end - time.perf_counter())
            done, _ = await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if job.future.done():
                return
            if watch is not None and watch in done:
                if watch.exception() is None:
                    job.disconnected = True
                    job.cancel.cancel()
                    raise ClientDisconnected("the client disconnected")
                watch = None  # could not watch the connection: wait for the rest
            elif not done:
                job.cancel.cancel()
                raise job.cancel_error()
    finally:
        if watch is not None:
            watch.cancel()
