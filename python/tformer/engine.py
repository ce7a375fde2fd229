"""tformer.Engine: in-flight batching (docs/DECODING.md, "tformer.Engine"). Requests with any
options are decoded together by one C++ engine thread that, before every decoder step, lets
finished rows leave and queued requests join; each request's results equal what
`model.generate` gives for it alone.

    >>> with tformer.Engine("opus-mt-fr-en", max_rows=128) as engine:
    ...     future = engine.submit([[432, 11, 0]], beam_size=4)        # concurrent.futures.Future
    ...     for token in engine.stream([432, 11, 0], beam_size=1):     # tokens as decided
    ...         print(token)
    ...     future.result()[0].tokens[0]

This module converts arguments (as generate does: sources sorted by length, options checked
in Python) and turns the binding's callbacks into futures, iterators and asyncio awaitables."""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import numbers
import os
import queue
import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import numpy as np

from ._native import _core
from .generate import GenerationResult, build_options, cancel_tokens
from .inputs import prepare_ids
from .option_checks import describe, integer, is_real

if TYPE_CHECKING:
    from .model import Transformer
    from .types import PathLike, SourceIds

_T = TypeVar("_T")
_U = TypeVar("_U")

_DONE = object()  # end of a stream's token queue


class DeadlineExceeded(TimeoutError):
    """A request's `deadline` passed before it finished; its rows were freed."""


class EngineFuture(concurrent.futures.Future[_T]):
    """The Future of one engine request. Unlike an executor's, `cancel()` also works while
    the request runs: its sources stop at the engine's next step and the future reports
    cancelled (`result()` raises CancelledError) right away."""

    def __init__(self, tokens: list[_core.CancelToken]) -> None:
        super().__init__()
        self._tokens = tokens  # the request's CancelTokens (distinct ones)

    def cancel(self) -> bool:
        """Cancels the request, queued or running; False if it had already finished."""
        # Never marked running, so the base class cancels any future not yet done.
        if not super().cancel():
            return False
        for token in self._tokens:
            token.cancel()
        return True

    def then(self, convert: Callable[[_T], _U]) -> EngineFuture[_U]:
        """A future of convert(this one's result) (run on the engine thread when it is
        done; its errors become the new future's); cancelling either cancels the request."""
        out: EngineFuture[_U] = EngineFuture(self._tokens)

        def done(inner):
            if inner.cancelled():
                out.cancel()
            elif inner.exception() is not None:
                out._finish(None, inner.exception())
            else:
                try:
                    out._finish(convert(inner.result()), None)
                except BaseException as e:
                    out._finish(None, e)

        self.add_done_callback(done)
        return out

    def _finish(self, results, error):
        try:
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(results)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile: the outcome is dropped
            pass


def _one_source(src_id):
    """A flat list of ids (or 1-D array) is one source."""
    if isinstance(src_id, np.ndarray) and src_id.ndim == 1:
        return [src_id]
    if isinstance(src_id, (list, tuple)) and src_id and isinstance(src_id[0], numbers.Integral):
        return [list(src_id)]
    return src_id


def _seconds(name, value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be None or a number of seconds >= 0, got {describe(value)}")
    return float(value)


def _load(model_or_path, device, dtype):
    from .model import Transformer
    from .model_dirs import load_model_dir

    if isinstance(model_or_path, Transformer):
        return model_or_path.to(device, dtype)
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise TypeError("model_or_path must be a tformer.Transformer or a model directory (saved with "
                        f"Transformer.save, or a Hugging Face one), got {type(model_or_path).__name__}")
    return load_model_dir(model_or_path, device, dtype)


class Engine:
    """Decodes many requests at once, each with its own options.

    model_or_path: a tformer.Transformer (moved to `device` / `dtype` when given), or a
      directory: one written by Transformer.save, or a Hugging Face model directory.
    max_rows: decoder rows per step at most (a beam-4 source is 4 rows).
    max_batch_tokens: source tokens the encoder takes per step at most (newcomers' encoders
      run batched before the step they join).
    kv_cache_mb: the K/V block pool's size in MiB (None: a default budget); a request that
      does not fit waits for rows to leave.
    block_size: decoder positions per K/V block.
    large_request_every: small requests first — while a request of at most small_request_rows
      rows runs, larger ones join only every large_request_every-th step (the steps between
      carry small requests' rows only, and cost far less on a CPU; larger newcomers are admitted
      only at those large steps too); 1: every step carries every row. Results are the same either way; only who waits changes (docs/SERVING.md).
    small_request_rows: the rows (sources x beam) of a request that counts as small.
    update_wait_steps: a weight update of the model (set_parameters, a training step) waits
      until the running requests have finished, while nothing new is admitted, so that each
      request decodes with one set of weights; a request still running this many steps after
      the update began waiting fails (RuntimeError: submit it again). 0: no bound.
    """

    def __init__(self, model_or_path: Transformer | PathLike, *, max_rows: int = 256, max_batch_tokens: int = 8192,
                 kv_cache_mb: float | None = None, block_size: int = 16, large_request_every: int = 1,
                 small_request_rows: int = 4, update_wait_steps: int = 1024, device: str | None = None,
                 dtype: str | None = None) -> None:
        max_rows = integer("max_rows", max_rows, 1)
        max_batch_tokens = integer("max_batch_tokens", max_batch_tokens, 1)
        block_size = integer("block_size", block_size, 1)
        large_request_every = integer("large_request_every", large_request_every, 1)
        small_request_rows = integer("small_request_rows", small_request_rows, 1)
        update_wait_steps = integer("update_wait_steps", update_wait_steps, 0)
        if kv_cache_mb is not None and (not is_real(kv_cache_mb)
                                        or not math.isfinite(kv_cache_mb) or kv_cache_mb <= 0):
            raise ValueError(f"kv_cache_mb must be None (automatic) or a number of MiB > 0, got {describe(kv_cache_mb)}")
        kv_bytes = 0 if kv_cache_mb is None else max(1, int(kv_cache_mb * 2**20))
        self.model = _load(model_or_path, device, dtype)
        self._core = _core.Engine(self.model._core, max_rows=max_rows, max_batch_tokens=max_batch_tokens,
                                 kv_cache_bytes=kv_bytes, block_size=block_size,
                                 large_request_every=large_request_every, small_request_rows=small_request_rows,
                                 update_wait_steps=update_wait_steps)
        self._closed = False
        # Stops the engine thread when the Engine is dropped without close().
        self._finalizer = weakref.finalize(self, self._core.close)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"tformer.Engine({self.model!r}, {state})"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stops accepting requests, cancels the queued and running ones (their futures get
        cancelled results, as generate's cancel= gives) and stops the engine thread."""
        self._closed = True
        self._finalizer()

    def stats(self) -> dict[str, Any]:
        """The engine's counters: steps, rows_last_step, rows_per_step_mean, queue_length,
        running_requests, running_rows, max_rows, kv_block_size, kv_blocks_total,
        kv_blocks_used, kv_bytes_total, kv_bytes_used, completed, encoder_tokens."""
        return dict(self._core.stats())

    def submit(self, src_ids: SourceIds, *, deadline: float | None = None,
               cancel: _core.CancelToken | Sequence[_core.CancelToken] | None = None,
               on_token: Callable[[int, int], object] | None = None,
               **options: Any) -> EngineFuture[list[GenerationResult]]:
        """Queues a request; its Future's result is generate's: one GenerationResult per
        source, in input order. src_ids: a list of token-id lists (or one list: one source).
        options: generate's (beam_size, max_length, do_sample, seed, target_prefix, ...).
        deadline: seconds; past it the future raises tformer.DeadlineExceeded and the rows
        are freed at the next step. cancel: generate's (a tformer.CancelToken or one per
        source: those sources stop with `.cancelled` results; `future.cancel()` fires them).
        `future.cancel()` cancels the request, queued or running. on_token: fn(source index,
        token id), called on the engine thread (GIL held: keep it cheap) for each token as
        `stream` yields them, for every source of the request (tformer serve's "stream": true
        of several texts)."""
        return self._submit(src_ids, deadline, cancel, options, on_token)

    async def generate_async(self, src_ids: SourceIds, *, deadline: float | None = None,
                             cancel: _core.CancelToken | Sequence[_core.CancelToken] | None = None,
                             **options: Any) -> list[GenerationResult]:
        """`submit` for asyncio: cancelling the awaiting task cancels the request."""
        return await asyncio.wrap_future(self._submit(src_ids, deadline, cancel, options, None))

    def stream(self, src_id: SourceIds, *, deadline: float | None = None, **options: Any) -> TokenStream:
        """Iterator over the generated token ids of one source as they are decided (greedy,
        sampling: every token; beam search: the prefix all beams agree on, then the rest at
        the end; the final EOS is not yielded). Closing the iterator early cancels the
        request. Raises as the request's future would (DeadlineExceeded, ...)."""
        tokens: queue.SimpleQueue[Any] = queue.SimpleQueue()
        future = self._submit(src_id, deadline, None, options, lambda source, token: tokens.put(token), single=True)
        future.add_done_callback(lambda _: tokens.put(_DONE))
        return TokenStream(future, tokens)

    def astream(self, src_id: SourceIds, *, deadline: float | None = None, **options: Any) -> AsyncTokenStream:
        """`stream` for asyncio: `async for token in engine.astream(ids)`; closing it early
        (aclose, or the consuming task cancelled) cancels the request."""
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[Any] = asyncio.Queue()

        def put(item):
            try:
                loop.call_soon_threadsafe(tokens.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

        future = self._submit(src_id, deadline, None, options, lambda source, token: put(token), single=True)
        future.add_done_callback(lambda _: put(_DONE))
        return AsyncTokenStream(future, tokens)

    def _submit(self, src_ids, deadline, cancel, options, on_token, single=False):
        if self._closed:
            raise RuntimeError("engine is closed")
        if "max_batch_size" in options:
            raise ValueError("max_batch_size is not an engine option: the engine sizes its steps itself "
                             "(max_rows, max_batch_tokens)")
        if on_token is not None and not callable(on_token):
            raise TypeError(f"on_token must be a function (source index, token id), got {type(on_token).__name__}")
        ids, lengths = prepare_ids(_one_source(src_ids), "src_ids")
        batch = ids.shape[0]
        if single and batch != 1:
            raise ValueError(f"src_id: stream takes one source, got {batch}")
        deadline = _seconds("deadline", deadline)
        if deadline is not None and cancel is not None:
            raise ValueError("pass deadline or cancel, not both (a tformer.CancelToken carries its own timeout)")
        tokens = cancel_tokens(cancel, batch)
        opts = build_options(self.model, batch, **options)
        own = None
        if tokens is None:  # the request's own token: future.cancel() and the deadline fire it
            own = _core.CancelToken(deadline)
            tokens = [own] * batch
        # As generate: longest first (its batch, bit for bit), each source keeping its random stream.
        order = sorted(range(batch), key=lambda i: -lengths[i])
        sub = np.ascontiguousarray(ids[order, :lengths[order[0]]])
        opts.sample_ids = order
        prefix = list(opts.target_prefix)
        if prefix:
            opts.target_prefix = [prefix[i] for i in order]
        opts.set_cancel([tokens[i] for i in order])
        future: EngineFuture[list[GenerationResult]] = EngineFuture(list({id(t): t for t in tokens}.values()))

        def on_done(results, error):
            try:
                if error is not None:
                    future._finish(None, RuntimeError(error))
                    return
                out: list[GenerationResult | None] = [None] * batch  # results has one per source
                for i, r in zip(order, results):
                    out[i] = GenerationResult(tokens=[list(t) for t in r.tokens], scores=list(r.scores),
                                              attention=list(r.attention), cancelled=r.cancelled)
                if own is not None and deadline is not None and own.cancelled and any(r.cancelled for r in out if r):
                    future._finish(None, DeadlineExceeded(f"the request's deadline of {deadline:g} s passed"))
                else:
                    future._finish(out, None)
            except BaseException as e:  # never into the engine thread
                future._finish(None, e)

        # The engine numbers the sources in its (sorted) order; on_token gets the caller's.
        stream = None if on_token is None else (lambda source, token: on_token(order[source], token))
        if stream is not None:
            opts.set_on_token(stream)
        self._core.submit(sub, [lengths[i] for i in order], opts, on_done)
        return future


class TokenStream:
    """What `Engine.stream` returns: an iterator over one source's tokens as the engine
    decides them. Ends when the request does, raising its error if it failed
    (DeadlineExceeded, ...); close() (or dropping the iterator) cancels the request.
    `.future` is the request's future (its GenerationResult list: scores, n-best)."""

    def __init__(self, future: EngineFuture[list[GenerationResult]], tokens: queue.SimpleQueue[Any]) -> None:
        self.future = future
        self._tokens = tokens
        self._finished = False

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> int:
        if self._finished:
            raise StopIteration
        item = self._tokens.get()
        if item is _DONE:
            self._finished = True
            self.future.result()  # the request's error, if any
            raise StopIteration
        return item

    def close(self) -> None:
        """Stops the iteration and cancels the request (a no-op once it is done)."""
        self._finished = True
        self.future.cancel()  # a no-op once the request is done

    def __enter__(self) -> TokenStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class AsyncTokenStream:
    """What `Engine.astream` returns: TokenStream for `async for`; aclose() (or dropping
    it, or cancelling the consuming task) cancels the request."""

    def __init__(self, future: EngineFuture[list[GenerationResult]], tokens: asyncio.Queue[Any]) -> None:
        self.future = future
        self._tokens = tokens
        self._finished = False

    def __aiter__(self) -> AsyncTokenStream:
        return self

    async def __anext__(self) -> int:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._tokens.get()
        except BaseException:  # the consuming task was cancelled
            self.close()
            raise
        if item is _DONE:
            self._finished = True
            self.future.result()
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stops the iteration and cancels the request (a no-op once it is done)."""
        self._finished = True
        self.future.cancel()

    async def aclose(self) -> None:
        """close(), awaitable (`await stream.aclose()`, as async generators have it)."""
        self.close()

    async def __aenter__(self) -> AsyncTokenStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
