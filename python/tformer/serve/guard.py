"""GuardMiddleware: the checks made on the raw ASGI request, before FastAPI parses anything:
the Host header (421), the API key (401), the body size (413) and the time the body may take
to arrive (408). An oversized or slow body is never parsed, and a slow one never holds a
connection past its deadline."""
from __future__ import annotations

import asyncio
import hmac
import json

# The Host names a server bound to a loopback address accepts by default: a web page the
# browser loaded from elsewhere (DNS rebinding) sends its own name, not one of these.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1", "[::1]")
# The translation page (page.py): served without the API key, it holds no data.
PAGE_PATHS = ("/", "/index.html")


def default_allowed_hosts(bind: str):
    """The Host names `tformer serve --host BIND` accepts without --allowed-hosts: the local
    names when bound to a loopback address, any (None) otherwise."""
    return LOCAL_HOSTS if bind.strip().lower() in LOOPBACK_BINDS else None


def parse_allowed_hosts(value: str):
    """'--allowed-hosts a.example,*.b.example' -> a tuple of lowercase patterns ('*': any)."""
    hosts = tuple(h.strip().lower().rstrip(".") for h in value.split(",") if h.strip())
    if not hosts:
        raise ValueError("--allowed-hosts is empty: give host names separated by commas, or '*' for any")
    return hosts


def host_name(header: bytes) -> str:
    """The name of a Host header without its port, lowercase: 'LocalHost:8000' -> 'localhost',
    '[::1]:8000' -> '[::1]'."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[:end + 1] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    return host.rstrip(".")


def host_allowed(name: str, patterns) -> bool:
    for p in patterns:
        if p == "*" or p == name or (p.startswith("*.") and name.endswith(p[1:])):
            return True
    return False


class GuardMiddleware:
    """ASGI wrapper run before FastAPI (limits: a ServeLimits)."""

    def __init__(self, app, limits):
        self.app, self.limits = app, limits
        self._key = limits.api_key.encode() if limits.api_key else None
        self._hosts = tuple(limits.allowed_hosts) if limits.allowed_hosts is not None else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self._hosts is not None:
            name = host_name(headers.get(b"host", b""))
            if not host_allowed(name, self._hosts):
                return await _reply(send, 421, f"Host {name or '(none)'!r} is not served here: this server answers "
                                               "the names of its --allowed-hosts only")
        if self._key is not None and not _is_page(scope):
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
                    return await _reply(send, 413, f"request body of {int(length)} bytes > max_body_bytes {limit}",
                                        close=True)
            except ValueError:
                return await _reply(send, 400, "invalid Content-Length header", close=True)
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        timeout = self.limits.body_timeout_s or None
        try:
            body = await asyncio.wait_for(_read_body(receive, limit), timeout)
        except asyncio.TimeoutError:
            return await _reply(send, 408, f"the request body did not arrive within body_timeout_s {timeout:g}",
                                close=True)
        if body is None:
            return  # client went away
        if isinstance(body, int):
            return await _reply(send, 413, f"request body over max_body_bytes {limit}", close=True)
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive_replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, receive_replayed, send)


def _is_page(scope) -> bool:
    """GET / : the translation page holds no data and asks for the key itself."""
    return scope.get("method") == "GET" and scope.get("path") in PAGE_PATHS


async def _read_body(receive, limit):
    """The whole body; None if the client went away; its size so far (an int) once over limit."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(send, status, detail, extra_headers=(), close=False):
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    if close:  # the rest of the request was not read: the connection cannot carry another
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
