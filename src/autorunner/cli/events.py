"""``autorunner events …``: list, show and rerun stored events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, cast

import typer

from autorunner import app as composition
from autorunner import deciding, operations, views
from autorunner.cli import tools
from autorunner.policy import Policy
from autorunner.records import EventStatus

events_cli = typer.Typer(
    help="Inspect stored events, their runs, and rerun them.", no_args_is_help=True
)

STATUSES = ("pending", "running", "done", "dead")
Since = Annotated[
    str | None, typer.Option(help="Received since: 1h, 30m, 2d, ISO 8601 or epoch seconds.")
]
Until = Annotated[str | None, typer.Option(help="…and before (same forms; default: now).")]


@events_cli.command("list")
def events_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="pending, running, done or dead.")] = None,
    query: Annotated[str | None, typer.Option("--query", help="Only this query's events.")] = None,
    route: Annotated[str | None, typer.Option(help="Only events decided on this route.")] = None,
    since: Since = None,
    until: Until = None,
    as_json: tools.JsonFlag = False,
) -> None:
    """List stored events, newest first: status, route, effects, channel."""
    if status not in (None, *STATUSES):
        raise tools.UsageError(f"unknown status {status!r}: use {', '.join(STATUSES)}")
    start, end = tools.window(since, until)
    count = tools.limit(limit)
    settings = tools.settings()
    rows = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: b.store.list_events(
                limit=count,
                status=cast(EventStatus | None, status),
                since=start,
                until=end,
                query_id=query,
                route=route,
            ),
        )
    )
    if as_json:
        tools.print_json([r.to_dict() for r in rows])
    elif not rows:
        print("no events")
    else:
        tools.lines(views.event_rows(rows))


@events_cli.command("show")
def events_show(
    event_id: Annotated[
        str, typer.Argument(help="Any id of the event: stored, delivery or execution.")
    ],
    as_json: tools.JsonFlag = False,
) -> None:
    """Show one event's whole story: delivery, decision, verdict, effects, runs, operators."""
    settings = tools.settings()
    detail = tools.run(
        lambda: tools.with_backends(settings, lambda b: operations.find(b, event_id))
    )
    if as_json:
        tools.print_json(detail.to_dict())
    else:
        tools.lines(views.event_detail(detail))


@events_cli.command("rerun")
def events_rerun(
    event_id: Annotated[str | None, typer.Argument(help="One finished event to run again.")] = None,
    since: Since = None,
    until: Until = None,
    route: Annotated[str | None, typer.Option(help="Only events decided on this route.")] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Decide under this policy file now (default: the workers decide)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 1000,
    note: Annotated[str | None, typer.Option(help="Why, for the journal.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: tools.JsonFlag = False,
) -> None:
    """Decide finished events again and EXECUTE what is allowed (a new decision generation).

    Shows what each event would get first and asks before anything runs. Effect keys of the
    new generation cannot collide with the earlier ones', so every allowed effect happens again.
    """
    if (event_id is None) == (since is None):
        raise tools.UsageError("give exactly one of EVENT_ID or --since")
    start, end = tools.window(since, until)
    count = tools.limit(limit)
    settings = tools.settings()
    chosen = composition.policy_for(settings, str(policy) if policy else None)
    deciders = deciding.deciders(settings)
    kinds = tools.run(lambda: composition.valuation(settings))
    planned = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: operations.plan_rerun(
                b,
                chosen,
                deciding.budgeted(deciders, settings, b.store),
                valuers=kinds,
                event_id=event_id,
                since=start,
                until=end,
                route=route,
                limit=count,
            ),
        )
    )
    if not as_json:
        tools.lines(_preview_lines(planned, chosen, decided_now=policy is not None))
    if not yes:
        if not sys.stdin.isatty():
            raise tools.UsageError(
                f"rerun executes effects again ({len(planned)} event(s)): pass --yes to confirm"
            )
        typer.confirm(f"Run {len(planned)} event(s) again and execute what is allowed?", abort=True)
    started = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: operations.rerun_planned(
                b, planned, decided_now=policy is not None, policy_hash=chosen.hash, note=note
            ),
        )
    )
    if as_json:
        tools.print_json({"rerun": started, "policy_hash": chosen.hash})
    else:
        print(f"rerun {len(started)} event(s): the workers run them now (events show ID to follow)")


def _preview_lines(
    planned: list[operations.PlannedRerun], policy: Policy, *, decided_now: bool
) -> list[str]:
    how = (
        f"decided now under {policy.hash}; the workers still check their own policy's limits"
        if decided_now
        else f"as the policy in force ({policy.hash}) would decide with the recorded context;"
        " the workers decide afresh"
    )
    lines = [f"{len(planned)} event(s) to run again, {how}:"]
    for plan in planned:
        detail, again = plan.detail, plan.again
        allowed = ", ".join(f"{a.step_id} ({a.kind})" for a in again.verdict.allowed)
        denied = "; ".join(f"{d.action.step_id}: {d.reason}" for d in again.verdict.denied)
        lines.append(
            f"  {detail.summary.event_id} (generation {detail.generation + 1}, route {again.route}):"
            f" would do {allowed or 'nothing'}{'; denied ' + denied if denied else ''}"
        )
    return lines
