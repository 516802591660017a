"""The person's part of a verdict, for one attempt: refusals that stand, the approval asked for
(or found: asking again is finding) and what may run now. The rules are ``approvals``'; this
module only reads and writes the store (``Approvals``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autorunner.approvals import denial, gated, record_of, request_for
from autorunner.decision import Action, Verdict
from autorunner.events import Event
from autorunner.notional import Valuer
from autorunner.policy import Route
from autorunner.records import Leased
from autorunner.store.base import Approvals


@dataclass(frozen=True, slots=True)
class Gate:
    """``verdict`` as people's answers leave it; ``to_run`` now; ``waiting`` for the approval
    the event parks for (``None``: it does not); ``record`` for the run record."""

    verdict: Verdict
    to_run: tuple[Action, ...]
    waiting: str | None = None
    record: dict[str, Any] | None = None


async def gate(
    approvals: Approvals,
    leased: Leased,
    event: Event,
    route: Route,
    verdict: Verdict,
    *,
    valuers: Mapping[str, Valuer],
    now: float,
) -> Gate:
    """Apply the answers a person gave this decision generation, then ask about what the
    route gates and has no answer yet."""
    record = None
    if leased.pinned is not None and verdict.allowed:  # a person may have answered already
        verdict, record = await _refusals_stand(approvals, leased, verdict)
    approval = route.approval
    asked = gated(verdict.allowed, approval, valuers) if approval is not None else []
    if approval is None or not asked:
        return Gate(verdict=verdict, to_run=verdict.allowed, record=record)
    request = request_for(
        event, generation=leased.generation, route=route, approval=approval, actions=asked, now=now
    )
    view = await approvals.request_approval(request)
    if view.status == "pending":
        steps = {a.step_id for a in asked}
        to_run = (
            tuple(a for a in verdict.allowed if a.step_id not in steps)
            if approval.ungated == "run"
            else ()
        )
        return Gate(
            verdict=verdict, to_run=to_run, waiting=view.approval_id, record=record_of(view)
        )
    if not view.approved:
        for action in asked:
            verdict = verdict.deny(action.step_id, denial(view))
    return Gate(verdict=verdict, to_run=verdict.allowed, record=record_of(view))


async def _refusals_stand(
    approvals: Approvals, leased: Leased, verdict: Verdict
) -> tuple[Verdict, dict[str, Any] | None]:
    """``verdict`` with every step a person refused (or whose approval timed out into a
    denial) in this decision generation denied, whatever the policy in force now gates: a
    policy reloaded while an event waited must not undo a person's no."""
    record = None
    for view in await approvals.list_approvals(limit=100, event_id=leased.event.event_id):
        if view.generation == leased.generation and view.approved is False:
            record = record_of(view)
            for action in view.actions:
                verdict = verdict.deny(str(action["step_id"]), denial(view))
    return verdict, record
