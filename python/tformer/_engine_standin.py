"""A Python stand-in for the C++ binding `_core.Engine`
used only while the build has none: one worker thread runs each request alone through
`model._core.generate`, in arrival order. Same contract (submit / stats / close, on_done
called once on the worker thread), none of the step sharing. Deleted once the binding lands."""
from __future__ import annotations

import collections
import itertools
import threading

from ._native import _core


class Engine:
    def __init__(self, model_core, max_rows=256, max_batch_tokens=8192, kv_cache_bytes=0, block_size=16):
        self._model = model_core
        self._max_rows, self._block_size = max_rows, block_size
        self._queue = collections.deque()
        self._ids = itertools.count(1)
        self._cv = threading.Condition()
        self._closed = False
        self._running = None
        self._cancel = []
        self._completed = self._encoder_tokens = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="tformer-engine-standin")
        self._thread.start()

    def submit(self, ids, lengths, opts, on_done, on_token=None, cancel=()):
        # on_token, cancel: the binding reads them from opts (set_on_token, set_cancel), which
        # Python cannot read back; close() fires `cancel` to stop a running request.
        with self._cv:
            if self._closed:
                raise RuntimeError("engine is closed")
            rid = next(self._ids)
            self._queue.append((ids, list(lengths), opts, on_done, on_token, list(cancel)))
            self._cv.notify()
            return rid

    def stats(self):
        with self._cv:
            running = self._running
            return {"steps": 0, "rows_last_step": 0, "rows_per_step_mean": 0.0, "queue_length": len(self._queue),
                    "running_requests": int(running is not None), "running_rows": running or 0,
                    "max_rows": self._max_rows, "kv_block_size": self._block_size, "kv_blocks_total": 0,
                    "kv_blocks_used": 0, "kv_bytes_total": 0, "kv_bytes_used": 0, "completed": self._completed,
                    "encoder_tokens": self._encoder_tokens}

    def close(self):
        with self._cv:
            self._closed = True
            for token in self._cancel:
                token.cancel()
            self._cv.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self):
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                ids, lengths, opts, on_done, on_token, self._cancel = self._queue.popleft()
                if self._closed:  # queued at close: cancelled before its encoder runs
                    opts.set_cancel([_core.CancelToken(0)] * len(lengths))
                self._running = len(lengths) * opts.beam_size
            self._serve(ids, lengths, opts, on_done, on_token)
            with self._cv:
                self._running, self._cancel = None, []
                self._completed += 1
                self._encoder_tokens += sum(lengths)

    def _serve(self, ids, lengths, opts, on_done, user_on_token):
        # Beam search streams the rest of the best hypothesis at the end (the contract); count
        # what generate already streamed to send only the remainder.
        streamed = collections.Counter()
        if user_on_token is not None:
            def on_token(source, token):
                streamed[source] += 1
                user_on_token(source, token)
            opts.set_on_token(on_token)
        try:
            with self._model._reading():
                results = self._model.generate(ids, lengths, opts)
        except Exception as e:  # an internal failure of this request only
            on_done(None, str(e))
            return
        if user_on_token is not None:
            for source, r in enumerate(results):
                best = list(r.tokens[0]) if r.tokens else []
                for token in best[streamed[source]:]:
                    user_on_token(source, token)
        on_done(results, None)
