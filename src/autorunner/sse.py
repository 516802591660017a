"""A pure ``text/event-stream`` decoder following the WHATWG rules (no I/O).

Feed it bytes as they arrive, in chunks of any size; it yields ``ServerSentEvent`` values:

* lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the next
  are one line end);
* a leading UTF-8 BOM is dropped; invalid UTF-8 becomes U+FFFD rather than an error;
* ``:comment`` lines are counted (keep-alives), fields without a colon have an empty value, one
  space after the colon is dropped;
* ``data`` lines join with ``\\n``; ``id`` persists until changed (one containing NUL is
  ignored); ``retry`` is taken only when all ASCII digits; unknown fields are ignored;
* a blank line dispatches the event; an event with no data is not dispatched.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSentEvent:
    """One dispatched event; ``event`` defaults to ``message``."""

    event: str
    data: str
    id: str | None
    retry: int | None


class SSEDecoder:
    """Incremental decoder: ``feed(chunk)`` yields the events completed by that chunk."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        """Decode ``chunk`` and yield every event it completes."""
        text = self._utf8.decode(chunk)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        for line in self._lines(text):
            event = self._line(line)
            if event is not None:
                yield event

    def _lines(self, text: str) -> Iterator[str]:
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across chunks
        buffer = self._buffer + text
        self._pending_cr = buffer.endswith("\r")
        *complete, self._buffer = _LINE_END.split(buffer)
        yield from complete

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=self._last_id, retry=self._retry
        )
