"""What one HTTP connection may cost: uvicorn's httptools protocol with the defences it lacks.

The webhook port faces the internet. uvicorn (0.54, httptools) bounds the time between
requests (keep-alive) and nothing else: a client may take forever to send its headers or its
body, send megabytes of headers (httptools buffers them whole before calling back), and open
connections until the process has no descriptors left. Hypercorn bounds headers and idle reads
but not connections or a body's total time, at a third of the speed; Granian bounds headers but
not bodies or connections, and runs its own processes and loop where ``serve`` shares one loop
with the workers. So the runner keeps uvicorn and adds, per connection:

* **headers**: the request line and headers must arrive within ``header_timeout`` seconds of
  the connection opening (or of the previous response) and within ``max_header_bytes``
  (``431`` past it, counted before the parser sees the bytes), with at most ``max_headers``
  headers (``431``);
* **body**: no pause between body bytes longer than ``body_idle_timeout``, the whole body
  within ``body_timeout`` of the headers (``408`` either way; the application sees the client
  gone and stores nothing);
* **connections**: at most ``max_connections`` open at once; one more is answered ``503`` and
  closed at once, so the process never runs out of descriptors and never wedges;
* **garbage after a request** (or a client that half-closes after sending it) does not take the
  request's answer away: the request is answered, then the connection closes. A client that
  half-closes in the middle of a request is closed at once.

Deadlines are checked by one timer per server every ``tick`` seconds, not one timer per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Refusal = Callable[[str], None]
"""Called with a reason (``header_timeout``, ``body_timeout``, ``headers_too_large``,
``too_many_headers``, ``connection_limit``, ``bad_request``) each time a client is refused."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpLimits:
    """Bounds on one client; the defaults suit a webhook receiver facing the internet."""

    header_timeout: float = 10.0
    body_idle_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_connections: int = 1000

    @property
    def tick(self) -> float:
        """How often deadlines are checked: often enough to be within a quarter of the shortest."""
        return min(1.0, self.header_timeout / 4, self.body_idle_timeout / 4)


def _canned(status: str, reason: str) -> bytes:
    body = b'{"error":"%s"}' % reason.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n".encode()
        + (b"retry-after: 1\r\n" if status.startswith("503") else b"")
        + b"\r\n"
        + body
    )


_RESPONSES = {
    "header_timeout": _canned("408 Request Timeout", "header_timeout"),
    "body_timeout": _canned("408 Request Timeout", "body_timeout"),
    "headers_too_large": _canned("431 Request Header Fields Too Large", "headers_too_large"),
    "too_many_headers": _canned("431 Request Header Fields Too Large", "too_many_headers"),
    "connection_limit": _canned("503 Service Unavailable", "connection_limit"),
    "bad_request": _canned("400 Bad Request", "bad_request"),
}


class _TooManyHeaders(Exception):
    pass


def limited_protocol(limits: HttpLimits, on_refused: Refusal) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=…)`` that enforces ``limits``."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": limits, "refused": _Counted(on_refused), "_swept": {}},
    )


@dataclass(frozen=True, slots=True)
class _Counted:
    call: Refusal


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; build it with ``limited_protocol``."""

    limits: ClassVar[HttpLimits]
    refused: ClassVar[_Counted]
    _swept: ClassVar[dict[int, asyncio.TimerHandle]]
    """The sweep timer of each server (keyed by its connection set), while it has connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._headers_since: float | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._body_since: float | None = None
        self._body_progress = 0.0

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport
            self._refuse("connection_limit")
            return
        super().connection_made(transport)
        self._headers_since = self.loop.time()
        self._schedule_sweep()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._headers_since is not None:
            room = self.limits.max_header_bytes - self._header_bytes
            if len(data) > room:
                # Feed only what the headers may still take; more, and they are too large.
                if not self._feed(data[:room]):
                    return
                if self._headers_since is not None:
                    self._refuse("headers_too_large")
                    return
                data = data[room:]
            else:
                self._header_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False when the connection is being refused or upgraded."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _TooManyHeaders):
                self._refuse("too_many_headers")
            else:
                self._garbage()
            return False
        return not self._refused

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if self._answering():
            # A whole request is in hand: answer it over the open half, then close.
            self.cycle.keep_alive = False
            return True
        return None  # idle or mid-request: close now

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_since is None:
            self._headers_since = self.loop.time()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_since = None
        self._header_bytes = 0
        self._body_since = self._body_progress = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_progress = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_since = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle.response_complete and self._headers_since is None and not self._refused:
            self._headers_since = self.loop.time()  # nothing in hand: waiting for the next request

    # Refusals

    def _answering(self) -> bool:
        """A request was read whole and its answer is not yet complete."""
        return (
            self.cycle is not None and not self.cycle.more_body and not self.cycle.response_complete
        )

    def _garbage(self) -> None:
        if self._answering():
            # Bytes that are not HTTP after a whole request: answer that request, then close.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            self._headers_since = None
            return
        self._refuse("bad_request")

    def _refuse(self, reason: str) -> None:
        """Answer ``reason``'s canned response (unless an answer has begun) and close."""
        self._refused = True
        self._headers_since = self._body_since = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application sees the client gone, sends nothing
            cycle.message_event.set()
        if cycle is None or not cycle.response_started:
            self.transport.write(_RESPONSES[reason])
        self.transport.close()
        self.refused.call(reason)

    # Deadlines

    def _schedule_sweep(self) -> None:
        key = id(self.connections)
        if key not in self._swept:
            self._swept[key] = self.loop.call_later(
                self.limits.tick, self._sweep, self.connections, self.loop
            )

    @classmethod
    def _sweep(cls, connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        """Refuse every connection of one server that is past a deadline; again in a tick."""
        now = loop.time()
        for connection in list(connections):
            reason = connection._overdue(now)
            if reason is not None:
                connection._refuse(reason)
        if connections:
            cls._swept[id(connections)] = loop.call_later(
                cls.limits.tick, cls._sweep, connections, loop
            )
        else:
            del cls._swept[id(connections)]

    def _overdue(self, now: float) -> str | None:
        limits = self.limits
        if self._refused:
            return None
        if self._headers_since is not None and now - self._headers_since > limits.header_timeout:
            return "header_timeout"
        if self._body_since is not None:
            if self.flow.read_paused:  # we stopped reading, not the client
                self._body_progress = now
            if (
                now - self._body_progress > limits.body_idle_timeout
                or now - self._body_since > limits.body_timeout
            ):
                return "body_timeout"
        return None
