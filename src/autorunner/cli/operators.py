"""``status``, ``pause`` and ``resume``: what runs and what needs a person; the kill switch."""

from __future__ import annotations

from typing import Annotated

import typer

from autorunner import operations, views
from autorunner.cli import tools


def status(as_json: tools.JsonFlag = False) -> None:
    """Workers and their heartbeats, the queue against LAG_THRESHOLD, events, and what needs a
    person; reads the store and queue, changes nothing."""
    settings = tools.settings()
    data = tools.run(
        lambda: tools.with_backends(settings, lambda b: operations.status(b, settings))
    )
    if as_json:
        tools.print_json(data)
    else:
        tools.lines(views.status_lines(data))


def pause(
    reason: Annotated[
        str, typer.Option(help="Why; shown in every denied verdict.")
    ] = "paused by an operator",
) -> None:
    """Kill switch: no effect begins on any runner of this store (within PAUSE_CHECK_SECONDS);
    events wait, nothing is denied, and they run after resume."""
    settings = tools.settings()
    tools.run(lambda: tools.with_backends(settings, lambda b: operations.pause(b, reason)))
    print(f"paused: {reason} (events wait; autorunner resume runs them)")


def resume() -> None:
    """Lift the kill switch: the events that waited run now."""
    settings = tools.settings()
    lifted = tools.run(lambda: tools.with_backends(settings, operations.resume))
    print("resumed" if lifted else "not paused: nothing to resume")
