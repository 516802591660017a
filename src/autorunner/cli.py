"""The ``autorunner`` command: parse, call, print. Errors are one line and a non-zero exit."""

from __future__ import annotations

import importlib.metadata
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx2
import orjson
import typer

from autorunner import (
    cli_auto,
    cli_effects,
    cli_events,
    cli_policy,
    cli_replay,
    clitools,
    operations,
    serving,
    views,
)
from autorunner.errors import AutorunnerError, ConfigError
from autorunner.sender import sample_event, send_event

T = TypeVar("T")

cli = typer.Typer(
    help="autorunner: the agent runner for Elfa Auto.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"autorunner {importlib.metadata.version('autorunner')}")
        raise typer.Exit


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """autorunner: the agent runner for Elfa Auto."""


dlq_cli = typer.Typer(help="Inspect and redrive dead letters.", no_args_is_help=True)
cli.add_typer(cli_events.events_cli, name="events")
cli.add_typer(cli_effects.effects_cli, name="effects")
cli.add_typer(cli_policy.policy_cli, name="policy")
cli.add_typer(dlq_cli, name="dlq")
rejected_cli = typer.Typer(help="Authentic deliveries kept as rejected.", no_args_is_help=True)
cli.add_typer(rejected_cli, name="rejected")
cli.add_typer(cli_auto.queries_cli, name="queries")
cli.command("stream")(cli_auto.stream)
cli.add_typer(cli_auto.simulate_cli, name="simulate")
cli.command("replay")(cli_replay.replay_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script."""
    try:
        # Without standalone mode, click returns (not raises) the code of a typer.Exit.
        code = cli(args=list(argv) if argv is not None else None, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except (clitools.Failure, clitools.UsageError, AutorunnerError) as exc:
        print(f"autorunner: error: {exc}", file=sys.stderr)
        sys.exit(2 if isinstance(exc, ConfigError | clitools.UsageError) else 1)
    except typer.Abort:
        print("autorunner: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            message = exc.format_message()
            if message:  # empty when the help was printed instead
                print(f"autorunner: error: {message}", file=sys.stderr)
            sys.exit(code)
        raise


@cli.command()
def serve(
    port: Annotated[int | None, typer.Option(help="HTTP port (default: PORT or 3000).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: HOST or 127.0.0.1).")
    ] = None,
    demo: Annotated[
        int,
        typer.Option(
            help="Also run a simulated Auto beside the runner and fire this many triggers."
        ),
    ] = 0,
) -> None:
    """Run ingress, workers, stream subscribers and the sweeper in one process (local mode)."""
    settings = clitools.settings(port=port, host=host)
    if demo:
        from autorunner.demo import run_demo  # noqa: PLC0415 - only the demo needs the simulator

        clitools.serve_forever(run_demo(settings, demo))
    else:
        clitools.serve_forever(serving.serve(settings))


@cli.command()
def ingress(
    port: Annotated[int | None, typer.Option(help="HTTP port (default: PORT or 3000).")] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: HOST or 127.0.0.1).")
    ] = None,
) -> None:
    """Cloud mode: webhooks (and STREAM_QUERIES) in, stored in PostgreSQL, queued on Redis."""
    settings = clitools.settings(port=port, host=host)
    clitools.serve_forever(serving.serve(settings, role="ingress"))


@cli.command()
def worker(
    port: Annotated[
        int | None, typer.Option(help="Port for /healthz, /readyz, /metrics (default: PORT).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Bind address (default: HOST or 127.0.0.1).")
    ] = None,
) -> None:
    """Cloud mode: workers and the sweeper; run as many replicas as the load needs."""
    settings = clitools.settings(port=port, host=host)
    clitools.serve_forever(serving.serve(settings, role="worker"))


@dlq_cli.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: clitools.JsonFlag = False,
) -> None:
    """List dead-lettered events with their reasons."""
    count = clitools.limit(limit)
    settings = clitools.settings()
    rows = clitools.run(
        lambda: clitools.with_backends(settings, lambda b: b.store.list_dead_letters(limit=count))
    )
    if as_json:
        clitools.print_json([r.to_dict() for r in rows])
        return
    clitools.table(
        "dead letters",
        ["event id", "attempts", "dead at", "reason"],
        [[r.event_id, str(r.attempts), clitools.when(r.dead_at), r.reason] for r in rows],
    )


@dlq_cli.command("redrive")
def dlq_redrive(
    event_id: Annotated[str | None, typer.Argument(help="The dead event to run again.")] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="Redrive every dead letter.")] = False,
    as_json: clitools.JsonFlag = False,
) -> None:
    """Send dead-lettered events back to the queue with a fresh attempt count."""
    if (event_id is None) == (not redrive_all):
        raise clitools.UsageError("give exactly one of EVENT_ID or --all")
    settings = clitools.settings()
    ids = clitools.run(
        lambda: clitools.with_backends(
            settings, lambda b: operations.redrive(b, None if redrive_all else event_id)
        )
    )
    if as_json:
        clitools.print_json({"redriven": ids})
    else:
        print(f"redriven {len(ids)} event(s)")


@cli.command()
def status(as_json: clitools.JsonFlag = False) -> None:
    """Workers and their heartbeats, the queue against LAG_THRESHOLD, events, and what needs a
    person; reads the store and queue, changes nothing."""
    settings = clitools.settings()
    data = clitools.run(
        lambda: clitools.with_backends(settings, lambda b: operations.status(b, settings))
    )
    if as_json:
        clitools.print_json(data)
    else:
        clitools.lines(views.status_lines(data))


@rejected_cli.command("list")
def rejected_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: clitools.JsonFlag = False,
) -> None:
    """Authentic deliveries that could not be read as an event, kept for inspection."""
    count = clitools.limit(limit)
    settings = clitools.settings()
    rows = clitools.run(
        lambda: clitools.with_backends(settings, lambda b: b.store.list_rejected(limit=count))
    )
    if as_json:
        clitools.print_json([r.to_dict() for r in rows])
    elif not rows:
        print("no rejected deliveries")
    else:
        clitools.lines(views.rejected_rows(rows))


@cli.command()
def pause(
    reason: Annotated[
        str, typer.Option(help="Why; shown in every denied verdict.")
    ] = "paused by an operator",
) -> None:
    """Kill switch: no effect begins on any runner of this store (within PAUSE_CHECK_SECONDS);
    events wait, nothing is denied, and they run after resume."""
    settings = clitools.settings()
    clitools.run(lambda: clitools.with_backends(settings, lambda b: operations.pause(b, reason)))
    print(f"paused: {reason} (events wait; autorunner resume runs them)")


@cli.command()
def resume() -> None:
    """Lift the kill switch: the events that waited run now."""
    settings = clitools.settings()
    lifted = clitools.run(lambda: clitools.with_backends(settings, operations.resume))
    print("resumed" if lifted else "not paused: nothing to resume")


@cli.command("send-test-event")
def send_test_event(
    url: Annotated[str | None, typer.Argument(help="Webhook URL (default: this runner's).")] = None,
    event_id: Annotated[
        str | None,
        typer.Option(
            help="The delivery's X-Auto-Event-Id (default: a new UUID); the sample body carries"
            " it too. A body's own ids decide the stored event's id."
        ),
    ] = None,
    execution_id: Annotated[
        str | None, typer.Option(help="Execution id of the sample body (not with --body).")
    ] = None,
    body: Annotated[
        Path | None, typer.Option(help="JSON body file (default: a sample trigger).")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="Signing secret (default: first of AUTO_SECRET).", envvar=None),
    ] = None,
    legacy: Annotated[bool, typer.Option(help="Sign with the older SHA256(secret) key.")] = False,
    as_json: clitools.JsonFlag = False,
) -> None:
    """Sign an event exactly as Auto does and POST it."""
    if body is not None and execution_id is not None:
        raise clitools.UsageError(
            "--execution-id shapes the sample body: with --body, put executionId in the file"
        )
    settings = clitools.settings()
    key = secret or (
        settings.auto_secret.get_secret_value().split(",")[0].strip()
        if settings.auto_secret
        else None
    )
    if not key:
        raise ConfigError("no signing secret: set AUTO_SECRET or pass --secret")
    target = url or f"http://{settings.host}:{settings.port}/webhooks/auto"
    eid = event_id or str(uuid.uuid4())
    if body is not None:
        try:
            payload = orjson.loads(body.read_bytes())
        except OSError as exc:
            raise clitools.UsageError(f"cannot read {body}: {exc.strerror or exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise clitools.UsageError(f"{body} is not JSON: {exc}") from exc
    else:
        payload = sample_event(event_id=eid, execution_id=execution_id)

    async def go() -> Any:
        async with httpx2.AsyncClient(timeout=10) as client:
            try:
                return await send_event(client, target, key, payload, event_id=eid, legacy=legacy)
            except httpx2.TransportError as exc:
                raise clitools.Failure(f"cannot reach {target}: {exc}") from exc

    reply = clitools.run(go)
    if as_json:
        clitools.print_json({"status": reply.status, "eventId": eid, "response": reply.body})
    else:
        print(f"{reply.status} {orjson.dumps(reply.body).decode()}")
    if reply.status >= 300:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
