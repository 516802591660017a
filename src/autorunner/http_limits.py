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
  (``431`` past it), with at most ``max_headers`` headers (``431``);
* **body**: no pause between body bytes longer than ``body_idle_timeout``, the whole body
  within ``body_timeout`` of the headers (``408`` either way; the application sees the client
  gone and stores nothing), and no more than ``max_body_bytes`` plus ``max_header_bytes`` of
  framing on the wire (``413``); trailers after a chunked body are refused (``400``), so a
  header can neither grow unbounded after the headers nor be added to a request after them;
* **connections**: at most ``max_connections`` open at once; one more is answered ``503`` and
  closed at once, so the process never runs out of descriptors and never wedges;
* **a bad request after good ones** on the same connection (garbage, too many headers, a
  timeout) does not take their answers away: the requests read whole are answered, then the
  connection closes unanswered for the rest. A client that half-closes after sending a request
  gets its answer; one that half-closes in the middle of a request is closed at once.

Bytes are parsed in slices of ``SLICE``, each counted against the phase (headers or body) of the
request it ends in, so the parser never holds more than a limit and a slice of one request,
however many requests a single read carries. Deadlines are checked by one timer per server every
``tick`` seconds, not one timer per request.
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
``too_many_headers``, ``body_too_large``, ``trailers``, ``connection_limit``, ``bad_request``,
``upgrade_ignored``) each time a client is refused, or its upgrade ignored."""
SLICE = 8 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpLimits:
    """Bounds on one client; the defaults suit a webhook receiver facing the internet."""

    header_timeout: float = 10.0
    body_idle_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * 1024
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
    "body_too_large": _canned("413 Content Too Large", "body_too_large"),
    "trailers": _canned("400 Bad Request", "trailers"),
    "connection_limit": _canned("503 Service Unavailable", "connection_limit"),
    "bad_request": _canned("400 Bad Request", "bad_request"),
}


class _TooManyHeaders(Exception):
    pass


class _Trailers(Exception):
    pass


class _HeadersTooLarge(Exception):
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
        self._message = 0
        self._phase_bytes = 0
        self._header_count = 0
        self._header_size = 0
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
        for start in range(0, len(data), SLICE):
            piece = data[start : start + SLICE]
            before = (self._message, self._phase())
            if not self._feed(piece):
                return
            self._count(len(piece), before)
            if self._refused:
                return

    def _phase(self) -> str | None:
        if self._headers_since is not None:
            return "headers"
        return "body" if self._body_since is not None else None

    def _count(self, size: int, before: tuple[int, str | None]) -> None:
        """Charge a slice to the phase of the request it ended in (the whole slice when that
        phase began within it: an upper bound), and refuse past the phase's limit."""
        phase = self._phase()
        if phase is None:
            return
        same = before == (self._message, phase)
        self._phase_bytes = self._phase_bytes + size if same else size
        limits = self.limits
        if phase == "headers" and self._phase_bytes > limits.max_header_bytes:
            self._refuse("headers_too_large")
        elif (
            phase == "body" and self._phase_bytes > limits.max_body_bytes + limits.max_header_bytes
        ):
            self._refuse("body_too_large")

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
            elif isinstance(exc.__context__, _HeadersTooLarge):
                self._refuse("headers_too_large")
            elif isinstance(exc.__context__, _Trailers):
                self._refuse("trailers")
            else:
                self._refuse("bad_request")
            return False
        return not self._refused

    def _unsupported_upgrade_warning(self) -> None:
        # Counted and logged like a refusal (at most a line a reason every so often), not two
        # lines of uvicorn's per connection: the request itself is answered as plain HTTP.
        self.refused.call("upgrade_ignored")

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
        self._message += 1
        self._header_count = 0
        self._header_size = 0

    def on_url(self, url: bytes) -> None:
        self._grow_headers(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._body_since is not None:
            raise _Trailers  # after a chunked body: never added to the request's headers
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _TooManyHeaders
        self._grow_headers(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _grow_headers(self, size: int) -> None:
        # The exact size of what the parser handed over; unfinished headers are bounded by the
        # byte count of ``_count`` instead (the parser holds a header until its line ends).
        self._header_size += size
        if self._header_size > self.limits.max_header_bytes:
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        self._headers_since = None
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

    def _refuse(self, reason: str) -> None:
        """Answer ``reason``'s canned response and close; but when requests read whole before
        this one still await their answers, answer those first and close unanswered after."""
        self._refused = True
        self._headers_since = self._body_since = None
        self.refused.call(reason)
        cycle = self.cycle
        if reason != "connection_limit" and self._answering():
            cycle.keep_alive = False  # the last request read whole closes the connection
            self.flow.pause_reading()
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application sees the client gone, sends nothing
            cycle.message_event.set()
        if cycle is None or not cycle.response_started:
            self.transport.write(_RESPONSES[reason])
        self.transport.close()

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
