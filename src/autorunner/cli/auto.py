"""The commands that talk to Elfa Auto: ``queries …`` and ``stream``."""

from __future__ import annotations

import asyncio
import signal
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer

from autorunner import app as composition
from autorunner import serving
from autorunner.auto_client import AutoClient
from autorunner.auto_models import QuerySummary
from autorunner.backends import open_backends
from autorunner.cli import tools
from autorunner.config import Settings
from autorunner.errors import AutoNotFound, AutoRejected, ConfigError

T = TypeVar("T")

queries_cli = typer.Typer(
    help="Validate, create, list, poll, cancel and delete Auto queries.", no_args_is_help=True
)


def read_query(path: Path) -> dict[str, Any]:
    """A query body from a JSON or TOML file (by extension; JSON otherwise)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise tools.UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        value: Any = tomllib.loads(text.decode()) if path.suffix == ".toml" else orjson.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, orjson.JSONDecodeError) as exc:
        raise tools.UsageError(f"{path} is not a query in JSON or TOML: {exc}") from exc
    if not isinstance(value, dict):
        raise tools.UsageError(f"{path} must hold an object, not {type(value).__name__}")
    return value


async def with_auto(settings: Settings, fn: Callable[[AutoClient], Awaitable[T]]) -> T:
    async with composition.http_client() as http:
        client = composition.build_auto_client(settings, http)
        if client is None:
            raise ConfigError(
                "no Elfa credential: set ELFA_API_KEY (or ELFA_AGENT_SECRET for x402 mode)"
            )
        return await fn(client)


def _call(fn: Callable[[AutoClient], Awaitable[T]]) -> T:
    settings = tools.settings()
    return tools.run(lambda: with_auto(settings, fn))


@queries_cli.command("validate")
def validate(file: Path, as_json: tools.JsonFlag = False) -> None:
    """Ask Auto whether a query body is valid, and what it would cost."""
    body = read_query(file)
    result = _call(lambda c: c.validate(body))
    if as_json:
        tools.print_json(result.model_dump(mode="json"))
    else:
        cost = "-" if result.estimated_cost is None else f"{result.estimated_cost:g}"
        print(f"valid: {result.valid}  estimated cost: {cost}")
        for error in result.errors:
            print(f"  error: {error}")
        for warning in result.warnings:
            print(f"  warning: {warning}")
    if not result.valid:
        raise typer.Exit(1)


@queries_cli.command("create")
def create(file: Path, as_json: tools.JsonFlag = False) -> None:
    """Validate a query body, then create it (nothing is created if it is invalid)."""
    body = read_query(file)

    async def go(client: AutoClient) -> dict[str, Any]:
        validation = await client.validate(body)
        if not validation.valid:
            raise tools.Failure(
                f"query is invalid: {'; '.join(map(str, validation.errors)) or 'no reason given'}"
            )
        return (await client.create(body)).model_dump(mode="json")

    created = _call(go)
    if as_json:
        tools.print_json(created)
    else:
        print(f"created {created['query_id']} ({created.get('status')})")


@queries_cli.command("poll")
def poll(query_id: str, as_json: tools.JsonFlag = False) -> None:
    """A query's status, latest evaluation and executions."""
    status = _call(lambda c: c.poll(query_id))
    if as_json:
        tools.print_json(status.model_dump(mode="json"))
        return
    print(f"query {status.query_id or query_id}: {status.status}")
    tools.table(
        "executions",
        ["execution id", "type", "status", "created", "error"],
        [
            [
                e.id,
                e.type or "",
                e.status or "",
                e.created_at or "",
                e.error.code or "" if e.error else "",
            ]
            for e in status.executions
        ],
    )


@queries_cli.command("list")
def list_queries(
    status: Annotated[str | None, typer.Option(help="Only queries in this status.")] = None,
    search: Annotated[str | None, typer.Option(help="Only queries whose title has this.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many first.")] = 0,
    as_json: tools.JsonFlag = False,
) -> None:
    """The account's queries (GET /queries; API-key mode). Where a deployment has no listing,
    the queries behind the recent executions."""
    count = tools.limit(limit)
    if offset < 0:
        raise tools.UsageError(f"--offset must be 0 or more, got {offset}")

    async def go(client: AutoClient) -> tuple[list[dict[str, Any]], bool]:
        """The rows, and whether they come from the executions instead of the listing."""
        try:
            page = await client.list_queries(
                status=status, search=search, limit=count, offset=offset
            )
        except (AutoNotFound, AutoRejected) as exc:
            if isinstance(exc, AutoRejected) and exc.status != 405:
                raise
            try:
                return await _queries_from_executions(client, count), True
            except AutoNotFound:
                raise exc from None  # nothing there either: a wrong ELFA_BASE_URL, say so
        fields = set(QuerySummary.model_fields)
        return [q.model_dump(mode="json", include=fields) for q in page.items], False

    rows, from_executions = _call(go)
    if as_json:
        tools.print_json(rows)
        return
    if from_executions:
        tools.table(
            "queries",
            ["query id", "executions", "last execution"],
            [[r["query_id"], str(r["executions"]), r["last_execution"] or "-"] for r in rows],
        )
        return
    tools.table(
        "queries",
        ["query id", "status", "title", "created"],
        [
            [r["query_id"] or "?", r["status"] or "-", r["title"] or "-", r["created_at"] or "-"]
            for r in rows
        ],
    )


async def _queries_from_executions(client: AutoClient, limit: int) -> list[dict[str, Any]]:
    """The fallback listing: the queries behind the account's recent executions."""
    page = await client.executions(limit=100)
    seen: dict[str, dict[str, Any]] = {}
    for execution in page.data:
        key = execution.query_id or "?"
        entry = seen.setdefault(key, {"query_id": key, "executions": 0, "last_execution": None})
        entry["executions"] += 1
        entry["last_execution"] = max(
            filter(None, [entry["last_execution"], execution.created_at]), default=None
        )
    rows = sorted(seen.values(), key=lambda e: e["last_execution"] or "", reverse=True)
    return rows[:limit]


@queries_cli.command("delete")
def delete(query_id: str, as_json: tools.JsonFlag = False) -> None:
    """Delete an ended query (cancel it first if it is still active)."""

    async def go(client: AutoClient) -> dict[str, Any]:
        try:
            return (await client.delete(query_id)).model_dump(mode="json")
        except AutoRejected as exc:
            if exc.status == 409:
                raise tools.Failure(
                    f"{query_id} is still active: `autorunner queries cancel {query_id}` first"
                ) from exc
            raise

    deleted = _call(go)
    if as_json:
        tools.print_json(deleted)
    else:
        print(f"deleted {query_id}")


@queries_cli.command("cancel")
def cancel(query_id: str, as_json: tools.JsonFlag = False) -> None:
    """Cancel a query; one that already ended counts as cancelled."""
    result = _call(lambda c: c.cancel(query_id))
    if as_json:
        tools.print_json(result.model_dump(mode="json"))
    elif result.already_terminal:
        print(f"{query_id} had already ended")
    else:
        print(f"cancelled {query_id}")


def stream(
    query: Annotated[
        list[str] | None, typer.Option("--query", help="A query id to follow (repeatable).")
    ] = None,
    follow_all: Annotated[
        bool, typer.Option("--all", help="Follow the account stream (API key only).")
    ] = False,
) -> None:
    """Follow Auto's event streams into the store (gap-free: reconciles by polling)."""
    targets: list[str | None] = [*(query or []), *([None] if follow_all else [])]
    if not targets:
        raise tools.UsageError("give --query ID (repeatable) or --all")
    settings = tools.settings()
    tools.serve_forever(_stream(settings, targets))


async def _stream(settings: Settings, targets: list[str | None]) -> None:
    """Follow every target until each ends; the first refusal becomes the command's error."""
    backends = await open_backends(settings)
    runtime = composition.build_runtime(settings, backends)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if runtime.auto is None:
            raise ConfigError(
                "no Elfa credential: set ELFA_API_KEY (or ELFA_AGENT_SECRET for x402 mode)"
            )
        refusals = await asyncio.gather(
            *(serving.follow(runtime, target, stop) for target in targets)
        )
    finally:
        await runtime.aclose()
    if refused := next((r for r in refusals if r is not None), None):
        raise refused
