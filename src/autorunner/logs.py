"""Structured logs: JSON lines when stderr is not a terminal, readable lines when it is (one
short line per event: ``human_log``).

Every line about an event carries ``event_id``; secrets never reach a log call (settings mask
them and signature headers are dropped before anything is logged or stored).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import BinaryIO, Literal, TextIO, cast

import orjson
import structlog

from autorunner.human_log import HumanRenderer, drop_chatter

LogFormat = Literal["auto", "json", "console"]


class _Sink:
    """stderr that stops writing, instead of raising, once its reader has gone (a closed pipe:
    ``serve | head``): a log line that cannot be written must never stop the runner.

    Lines are written to the stream's binary buffer when it has one (``orjson`` renders
    bytes). Our own info and debug lines, written on an event loop's thread, are flushed at the
    end of the loop's current pass, so a burst of them costs one ``write`` call instead of one
    each; warnings and errors, the standard library's lines, and lines written anywhere else
    (CLI commands, threads) are flushed at once, and ``flush()`` flushes what is held (the
    serverless handlers call it after each invocation). A loop that blocks holds its pass's
    info lines until it moves on, and a SIGKILL can lose them (the log is not the audit
    record: the store is)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._binary: BinaryIO | None = getattr(stream, "buffer", None)
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._gone = False
        self._flush_on: asyncio.AbstractEventLoop | None = None
        self.urgent = False
        """Set by the renderer for a warning or worse: the next flush is not deferred."""

    def write(self, text: str | bytes) -> int:
        if self._gone:
            return 0
        try:
            if isinstance(text, str):
                self.urgent = True  # the standard library's lines: warnings and worse
            if self._binary is None:
                return self._stream.write(text if isinstance(text, str) else text.decode())
            # Text lines go down as bytes too: one buffer keeps every line in order.
            data = (
                text.encode(self._encoding, "backslashreplace") if isinstance(text, str) else text
            )
            return self._binary.write(data)
        except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
            self._gone = True
        except OSError:  # EIO, EAGAIN: this line is lost, the next may go through
            pass
        return 0

    def flush(self) -> None:
        if self._gone:
            return
        if self.urgent:
            self.urgent = False
            self.flush_now()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush_now()
            return
        if self._flush_on is not loop:  # not already due at the end of this loop's pass
            self._flush_on = loop
            loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_on = None
        if self._gone:
            return
        try:
            self._stream.flush()
            if self._binary is not None:
                self._binary.flush()
        except (BrokenPipeError, ValueError):
            self._gone = True
        except OSError:
            pass


_sink: _Sink | None = None
URGENT_LEVELS = frozenset({"warning", "warn", "error", "err", "critical", "fatal", "exception"})


def flush() -> None:
    """Write out the log lines held for the end of the loop's pass (a process about to be
    frozen or to exit without its loop's next pass calls this)."""
    if _sink is not None:
        _sink.flush_now()


class _JsonLines:
    """The JSON renderer of our own lines: ``orjson`` (a third of the standard library's cost
    per line), the standard library for what orjson refuses (an integer past 64 bits); a
    dataclass, datetime or other unknown object is shown by its ``repr`` as before (a
    dataclass's own ``repr`` may hide a secret its fields hold). A warning or worse is flushed
    at once."""

    OPTIONS = (
        orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    )

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink

    def __call__(self, _: object, method: str, event_dict: structlog.typing.EventDict) -> bytes:
        if method in URGENT_LEVELS:
            self._sink.urgent = True
        try:
            return orjson.dumps(event_dict, default=_fallback, option=self.OPTIONS)
        except orjson.JSONEncodeError:
            return json.dumps(event_dict, default=_fallback).encode()


def _fallback(value: object) -> object:
    return repr(value)


MAX_VALUE = 512
"""The longest text a log line carries for one value; a request can send megabytes."""
MAX_TRACE = 16 * 1024
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


def shown(text: str, limit: int = 64) -> str:
    """``text`` as a log line or an error message may carry it: control characters escaped,
    cut at ``limit`` characters with the length of the rest, quoted."""
    return f"'{bounded(text, limit)}'"


def bounded(text: str, limit: int = MAX_VALUE) -> str:
    """``text`` with control characters escaped and cut at ``limit`` characters."""
    if len(text) > limit:
        text = f"{text[:limit]}… (+{len(text) - limit} chars)"
    return text if text.isprintable() else text.translate(_CONTROL)


def _bound_values(
    _: object, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    for key, value in event_dict.items():
        if isinstance(value, str) and (len(value) > MAX_VALUE or not value.isprintable()):
            event_dict[key] = value[:MAX_TRACE] if key == "exception" else bounded(value)
    return event_dict


def configure(*, level: str = "info", fmt: LogFormat = "auto") -> None:
    """Configure structlog once for the process (the composition root calls this)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # Standard-library records are rendered as text (a logging.Formatter returns str); our own
    # lines, the hot path, as bytes.
    text_renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else HumanRenderer(colors=sys.stderr.isatty(), debug=level == "debug")
    )
    global _sink  # noqa: PLW0603 - one log configuration per process
    sink = _sink = _Sink(sys.stderr)
    renderer = _JsonLines(sink) if use_json else text_renderer
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *([] if use_json else [drop_chatter(level == "debug")]),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _bound_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=(
            structlog.BytesLoggerFactory(file=cast(BinaryIO, sink))
            if use_json
            else structlog.WriteLoggerFactory(file=cast(TextIO, sink))
        ),
        cache_logger_on_first_use=True,
    )
    # What libraries log through the standard library (uvicorn, psycopg, httpx) becomes the
    # same lines, bounded the same way: a library never writes an unbounded plain-text traceback.
    handler = logging.StreamHandler(cast(TextIO, sink))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                _bound_values,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                text_renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if getattr(h, "autorunner", False) is False]
    handler.autorunner = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Libraries speak up from warnings on (httpx announces every request at info).
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level.upper()]))
    # The PostgreSQL pool retries connections in the background and says so on every attempt,
    # in several unstructured lines; our own ``*.unavailable`` lines report an outage instead.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
