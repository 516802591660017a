"""``autorunner effects …``: the effect ledger, and settling the effects a crash left unknown."""

from __future__ import annotations

from typing import Annotated, cast

import typer

from autorunner import operations, views
from autorunner.cli import tools
from autorunner.records import EffectStatus

effects_cli = typer.Typer(
    help="The effect ledger: list effects and settle the ones whose outcome is unknown.",
    no_args_is_help=True,
)

STATUSES = ("planned", "pending", "done", "failed", "unknown")


@effects_cli.command("list")
def effects_list(
    status: Annotated[
        str | None, typer.Option(help="planned, pending, done, failed or unknown.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, most recently changed first.")] = 50,
    as_json: tools.JsonFlag = False,
) -> None:
    """List ledger entries; --status unknown shows what needs an operator."""
    if status not in (None, *STATUSES):
        raise tools.UsageError(f"unknown status {status!r}: use {', '.join(STATUSES)}")
    count = tools.limit(limit)
    settings = tools.settings()
    rows = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: b.store.list_effects(limit=count, status=cast(EffectStatus | None, status)),
        )
    )
    if as_json:
        tools.print_json(rows)
    elif not rows:
        print("no effects" if status is None else f"no {status} effects")
    else:
        tools.lines(views.effect_rows(rows))


@effects_cli.command("resolve")
def effects_resolve(
    effect_key: Annotated[str, typer.Argument(help="The unknown effect's key (effects list).")],
    sent: Annotated[
        bool, typer.Option("--sent", help="It reached the remote: mark it done.")
    ] = False,
    resend: Annotated[
        bool, typer.Option("--resend", help="It did not: perform it again (once).")
    ] = False,
    note: Annotated[str | None, typer.Option(help="Why, for the journal.")] = None,
    as_json: tools.JsonFlag = False,
) -> None:
    """Settle an effect whose outcome is unknown; the choice is journaled with who made it."""
    if sent == resend:
        raise tools.UsageError("give exactly one of --sent or --resend")
    settings = tools.settings()
    resolved = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: operations.resolve_effect(b, effect_key, resend=resend, note=note),
        )
    )
    if as_json:
        tools.print_json(
            {
                "effect_key": effect_key,
                "resolution": "resend" if resend else "sent",
                "event_id": resolved.event_id,
                "reopened": resolved.reopened,
            }
        )
    elif resend and resolved.reopened:
        print(f"{effect_key}: will be sent again; event {resolved.event_id} is queued")
    elif resend:
        print(f"{effect_key}: will be sent again on event {resolved.event_id}'s next attempt")
    else:
        print(f"{effect_key}: marked done (sent)")
