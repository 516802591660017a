"""What every ``autorunner`` command shares: settings, output, one-line failures, event loops."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from autorunner import logs, views
from autorunner.backends import Backends, open_backends
from autorunner.config import Settings, load_settings
from autorunner.service_loop import run_service

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


class Failure(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


class UsageError(Exception):
    """Options that do not fit together or a value out of range: one line, exit code 2."""


def settings(**overrides: object) -> Settings:
    """Load settings (``None`` overrides ignored) and configure logging from them."""
    loaded = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    logs.configure(level=loaded.log_level, fmt=loaded.log_format)
    return loaded


def serve_forever(main_coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a server: on uvloop, with the garbage collector set for a service (``service_loop``)."""
    run_service(main_coroutine)


def run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(fn())


async def with_backends(settings: Settings, fn: Callable[[Backends], Awaitable[T]]) -> T:
    backends = await open_backends(settings, create=False)
    try:
        return await fn(backends)
    finally:
        await backends.close()


def print_json(value: Any) -> None:
    sys.stdout.write(views.dumps(value, indent=True) + "\n")


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A titled table of aligned columns; no cell is ever cut short."""
    if not rows:
        print(f"no {title}")
        return
    print("\n".join(views.columns([h.upper() for h in header], rows)))


def lines(text: list[str]) -> None:
    print("\n".join(text))


when = views.when

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def instant(text: str, *, option: str, now: float | None = None) -> float:
    """A time given as ``30s``/``15m``/``1h``/``2d``/``1w`` ago, ISO 8601 or epoch seconds."""
    raw = text.strip()
    current = time.time() if now is None else now
    if len(raw) > 1 and raw[-1] in _UNITS and raw[:-1].replace(".", "", 1).isdigit():
        return current - float(raw[:-1]) * _UNITS[raw[-1]]
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{option}: cannot read {text!r} as a time: use 1h, 30m, 2d, ISO 8601 or epoch seconds"
        ) from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def window(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    """``--since``/``--until`` as instants; ``until`` must come after ``since``."""
    start = instant(since, option="--since") if since is not None else None
    end = instant(until, option="--until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--until ({until}) must be later than --since ({since})")
    return start, end


def limit(value: int) -> int:
    """A ``--limit`` must be at least 1."""
    if value < 1:
        raise UsageError(f"--limit must be at least 1, got {value}")
    return value
