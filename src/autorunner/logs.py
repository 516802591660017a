"""Structured logs: JSON lines when stderr is not a terminal, readable lines when it is.

Every line about an event carries ``event_id``; secrets never reach a log call (settings mask
them and signature headers are dropped before anything is logged or stored).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


def configure(*, level: str = "info", fmt: LogFormat = "auto") -> None:
    """Configure structlog once for the process (the composition root calls this)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The PostgreSQL pool retries connections in the background and says so on every attempt,
    # in several unstructured lines; our own ``*.unavailable`` lines report an outage instead.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
