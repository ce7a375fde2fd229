"""Connection deadlines for uvicorn (`tformer serve`): a connection must send a complete
request head within `header_timeout` seconds of opening (or of its first byte after a
response), else it is closed. With uvicorn's keep-alive timeout (idle connections between
requests) and GuardMiddleware's body deadline, no socket stays open for long without
sending a request: idle or half-open clients cannot hold every file descriptor."""
from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request head."""

    header_timeout = 10.0  # seconds; set by http_protocol()

    def connection_made(self, transport):
        self._head_timer = None
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data):
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request head still (or again) incomplete
            if self._head_timer is None and not self.transport.is_closing():
                self._arm_head_deadline()
        else:
            self._disarm_head_deadline()

    def connection_lost(self, exc):
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def on_response_complete(self):
        self._disarm_head_deadline()  # from now on the keep-alive timeout applies
        super().on_response_complete()

    def _arm_head_deadline(self):
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_deadline_passed)

    def _disarm_head_deadline(self):
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self):
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float):
    """The protocol class for uvicorn's `http=` option, with this head deadline."""
    if not header_timeout > 0:
        raise ValueError(f"header_timeout must be > 0 seconds, got {header_timeout}")
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"header_timeout": float(header_timeout)})
