"""Server-sent events for `"stream": true` (text/event-stream, the WHATWG format): one event
per change of a sentence's partial translation, then one final event.

    event: partial
    data: {"index": 0, "text": "The cat is"}

    event: done
    data: {"translations": ["The cat is sleeping."]}

    event: error
    data: {"status": 504, "detail": "the deadline of 300 ms passed before the translation was done"}

`done` carries exactly the JSON a non-streamed request would get; `error` the status and
detail its error reply would have. A stream ends after either."""
from __future__ import annotations

import json

MEDIA_TYPE = "text/event-stream"
# No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering): events go out as made.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str, data) -> bytes:
    """One event: its name and its data as one line of JSON (JSON escapes newlines, so the
    data never spans lines)."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def partial(index: int, text: str) -> bytes:
    return event("partial", {"index": index, "text": text})


def done(body: dict) -> bytes:
    return event("done", body)


def error(status: int, detail: str) -> bytes:
    return event("error", {"status": status, "detail": detail})


def parse(stream: bytes):
    """[(event name, data)] of a complete event stream (for clients and tests)."""
    out = []
    for block in stream.decode("utf-8").split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].lstrip(" "))
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out
