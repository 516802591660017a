"""What every ``autorunner`` command shares: settings, output, one-line failures, event loops."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
import typer

from autorunner import logs
from autorunner.backends import Backends, open_backends
from autorunner.config import Settings, load_settings

T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


class Failure(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def settings(**overrides: object) -> Settings:
    """Load settings (``None`` overrides ignored) and configure logging from them."""
    loaded = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    logs.configure(level=loaded.log_level, fmt=loaded.log_format)
    return loaded


def serve_forever(main_coroutine: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(main_coroutine)
    else:
        uvloop.run(main_coroutine)


def run(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(fn())


async def with_backends(settings: Settings, fn: Callable[[Backends], Awaitable[T]]) -> T:
    backends = await open_backends(settings, create=False)
    try:
        return await fn(backends)
    finally:
        await backends.close()


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console  # noqa: PLC0415 - rich is imported only for people
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
