"""``autorunner approvals list|approve|reject``: the answers events wait for, from a terminal."""

from __future__ import annotations

from typing import Annotated, cast

import typer

from autorunner import operations, views
from autorunner.cli import tools
from autorunner.records import ApprovalStatus

approvals_cli = typer.Typer(
    help="Approvals asked of people: list them, approve or reject one.", no_args_is_help=True
)

STATUSES = ("pending", "approved", "rejected", "expired")


@approvals_cli.command("list")
def approvals_list(
    status: Annotated[
        str | None, typer.Option(help="pending, approved, rejected or expired.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: tools.JsonFlag = False,
) -> None:
    """List approvals, newest first; --status pending shows what waits for a person."""
    if status not in (None, *STATUSES):
        raise tools.UsageError(f"unknown status {status!r}: use {', '.join(STATUSES)}")
    count = tools.limit(limit)
    settings = tools.settings()
    rows = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: b.store.list_approvals(
                limit=count, status=cast(ApprovalStatus | None, status)
            ),
        )
    )
    if as_json:
        tools.print_json([r.to_dict() for r in rows])
        return
    tools.table(
        "approvals",
        ["id", "status", "event", "asked at", "expires", "answered by", "actions"],
        [
            [
                r.approval_id,
                r.status,
                r.event_id,
                views.when(r.requested_at),
                views.when(r.expires_at),
                f"{r.answered_by} via {r.answered_via}" if r.answered_by else "",
                ", ".join(f"{a['step_id']}:{a['kind']}" for a in r.actions),
            ]
            for r in rows
        ],
    )


def _answer(approval_id: str, *, approve: bool, reason: str | None, as_json: bool) -> None:
    settings = tools.settings()
    answered = tools.run(
        lambda: tools.with_backends(
            settings,
            lambda b: operations.answer_approval(
                b, approval_id, approve=approve, via="cli", reason=reason
            ),
        )
    )
    view = answered.view
    if as_json:
        tools.print_json(view.to_dict())
    else:
        print(f"{view.approval_id} {view.status}: event {view.event_id} goes on")


@approvals_cli.command("approve")
def approve(
    approval_id: Annotated[str, typer.Argument(help="The approval's id (approvals list).")],
    reason: Annotated[str | None, typer.Option(help="A note for the journal.")] = None,
    as_json: tools.JsonFlag = False,
) -> None:
    """Approve the exact actions an approval shows; its event runs them."""
    _answer(approval_id, approve=True, reason=reason, as_json=as_json)


@approvals_cli.command("reject")
def reject(
    approval_id: Annotated[str, typer.Argument(help="The approval's id (approvals list).")],
    reason: Annotated[
        str | None, typer.Option(help="Why, for the verdict and the journal.")
    ] = None,
    as_json: tools.JsonFlag = False,
) -> None:
    """Reject an approval: its actions are denied, with who and why, in the event's verdict."""
    _answer(approval_id, approve=False, reason=reason, as_json=as_json)
