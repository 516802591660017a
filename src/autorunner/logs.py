"""Structured logs: JSON lines when stderr is not a terminal, readable lines when it is (one
short line per event: ``human_log``).

Every line about an event carries ``event_id``; secrets never reach a log call (settings mask
them and signature headers are dropped before anything is logged or stored).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO, cast

import structlog

from autorunner.human_log import HumanRenderer, drop_chatter

LogFormat = Literal["auto", "json", "console"]


class _Sink:
    """stderr that stops writing, instead of raising, once its reader has gone (a closed pipe:
    ``serve | head``): a log line that cannot be written must never stop the runner."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
                self._gone = True
        return 0

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._gone = True


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
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else HumanRenderer(colors=sys.stderr.isatty(), debug=level == "debug")
    )
    sink = cast(TextIO, _Sink(sys.stderr))
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
        logger_factory=structlog.WriteLoggerFactory(file=sink),
        cache_logger_on_first_use=True,
    )
    # What libraries log through the standard library (uvicorn, psycopg, httpx) becomes the
    # same lines, bounded the same way: a library never writes an unbounded plain-text traceback.
    handler = logging.StreamHandler(sink)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                _bound_values,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
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
