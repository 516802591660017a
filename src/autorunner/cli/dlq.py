"""``dlq list|redrive`` and ``rejected list``: what could not run, and what could not be read."""

from __future__ import annotations

from typing import Annotated

import typer

from autorunner import operations, views
from autorunner.cli import tools

dlq_cli = typer.Typer(help="Inspect and redrive dead letters.", no_args_is_help=True)
rejected_cli = typer.Typer(help="Authentic deliveries kept as rejected.", no_args_is_help=True)


@dlq_cli.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: tools.JsonFlag = False,
) -> None:
    """List dead-lettered events with their reasons."""
    count = tools.limit(limit)
    settings = tools.settings()
    rows = tools.run(
        lambda: tools.with_backends(settings, lambda b: b.store.list_dead_letters(limit=count))
    )
    if as_json:
        tools.print_json([r.to_dict() for r in rows])
        return
    tools.table(
        "dead letters",
        ["event id", "attempts", "dead at", "reason"],
        [[r.event_id, str(r.attempts), tools.when(r.dead_at), r.reason] for r in rows],
    )


@dlq_cli.command("redrive")
def dlq_redrive(
    event_id: Annotated[str | None, typer.Argument(help="The dead event to run again.")] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="Redrive every dead letter.")] = False,
    as_json: tools.JsonFlag = False,
) -> None:
    """Send dead-lettered events back to the queue with a fresh attempt count."""
    if (event_id is None) == (not redrive_all):
        raise tools.UsageError("give exactly one of EVENT_ID or --all")
    settings = tools.settings()
    ids = tools.run(
        lambda: tools.with_backends(
            settings, lambda b: operations.redrive(b, None if redrive_all else event_id)
        )
    )
    if as_json:
        tools.print_json({"redriven": ids})
    else:
        print(f"redriven {len(ids)} event(s)")


@rejected_cli.command("list")
def rejected_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: tools.JsonFlag = False,
) -> None:
    """Authentic deliveries that could not be read as an event, kept for inspection."""
    count = tools.limit(limit)
    settings = tools.settings()
    rows = tools.run(
        lambda: tools.with_backends(settings, lambda b: b.store.list_rejected(limit=count))
    )
    if as_json:
        tools.print_json([r.to_dict() for r in rows])
    elif not rows:
        print("no rejected deliveries")
    else:
        tools.lines(views.rejected_rows(rows))
