"""``autorunner replay``: re-decide stored events under a policy in dry-run, and what changes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from autorunner import app as composition
from autorunner import deciding, operations, views
from autorunner.cli import events, tools


def replay_command(
    event_id: Annotated[
        str | None, typer.Argument(help="One stored event to decide again.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy file (default: RUNNER_POLICY or built-in).")
    ] = None,
    since: events.Since = None,
    until: events.Until = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100_000,
    decider: Annotated[
        str | None, typer.Option(help="Decide every route with this decider (rules, llm) instead.")
    ] = None,
    as_json: tools.JsonFlag = False,
) -> None:
    """Re-decide stored events under a policy in dry-run and show what changes; never executes an effect."""
    if (event_id is None) == (since is None):
        raise tools.UsageError("give exactly one of EVENT_ID or --since")
    start, end = tools.window(since, until)
    count = tools.limit(limit)
    settings = tools.settings()
    chosen = composition.policy_for(settings, str(policy) if policy else None)
    deciders = deciding.deciders(settings)
    if decider is not None:
        chosen = operations.policy_with_decider(chosen, decider, deciders)
    kinds = tools.run(lambda: composition.valuation(settings))

    if event_id is not None:
        found = event_id
        result = tools.run(
            lambda: tools.with_backends(
                settings,
                lambda b: operations.replay_one(
                    b,
                    found,
                    chosen,
                    deciding.budgeted(deciders, settings, b.store),
                    valuers=kinds,
                ),
            )
        )
        if as_json:
            tools.print_json(result.to_dict())
        else:
            tools.lines(views.replayed_lines(result, chosen.hash))
        return

    summary = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: operations.replay_window(
                b,
                chosen,
                deciding.budgeted(deciders, settings, b.store),
                valuers=kinds,
                since=start,
                until=end,
                limit=count,
                progress=_progress if not as_json and sys.stderr.isatty() else _silent,
            ),
        )
    )
    if as_json:
        tools.print_json(summary.to_dict())
    else:
        tools.lines(
            views.replay_summary_lines(summary.policy_hash, summary.counts(), summary.differences())
        )


def _silent(_: int) -> Callable[[], None]:
    return lambda: None


def _progress(total: int) -> Callable[[], None]:
    """A transient bar for a person at a terminal, stopped by its last tick."""
    from rich.progress import Progress  # noqa: PLC0415 - people only

    if not total:
        return lambda: None
    bar = Progress(transient=True)
    task = bar.add_task("replaying", total=total)
    bar.start()

    def tick() -> None:
        bar.advance(task)
        if bar.finished:
            bar.stop()

    return tick
