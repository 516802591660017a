"""Replay: re-decide stored events under a policy, in dry-run, and say what would change.

Nothing here reaches an adapter: the stored event and the context recorded with its last run
are decided again and checked against the (new) policy's hard limits; the verdict is compared
with the recorded one. No effect is ever executed, no run is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from autorunner import facts
from autorunner.deciders import Decider
from autorunner.decision import Decision, Verdict
from autorunner.envelope import Envelope
from autorunner.events import Event
from autorunner.notional import Valuer
from autorunner.policy import Policy, check
from autorunner.records import EventDetail

Change = Literal["unchanged", "changed", "newly_denied", "newly_allowed", "no_record"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Replayed:
    """One event decided again: what it was, what it would be, and the kind of change."""

    event_id: str
    route: str
    change: Change
    before: Verdict | None
    after: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "route": self.route,
            "change": self.change,
            "before": None if self.before is None else self.before.to_dict(),
            "after": self.after.to_dict(),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Redecided:
    """An event decided in dry-run: its route and envelope, the decision (``None`` when the
    route's decider is not configured) and the verdict on it."""

    route: str
    envelope: Envelope
    decision: Decision | None
    verdict: Verdict


async def decide_event(
    event: Event,
    context: dict[str, Any],
    policy: Policy,
    deciders: Mapping[str, Decider],
    *,
    valuers: Mapping[str, Valuer],
) -> Redecided:
    """Route, envelope, decision and verdict for ``event`` under ``policy``; no effect."""
    route = policy.route_for(event)
    envelope = Envelope.build(event, route)
    decider = deciders.get(route.decider)
    if decider is None:
        refused = Verdict(
            allowed=(), denied=(), policy_hash=policy.hash, refused=f"no decider {route.decider!r}"
        )
        return Redecided(route=route.name, envelope=envelope, decision=None, verdict=refused)
    decision = await decider.decide(envelope, context, route=route)
    verdict = check(decision, route, policy_hash=policy.hash, valuers=valuers)
    return Redecided(route=route.name, envelope=envelope, decision=decision, verdict=verdict)


async def redecide(
    detail: EventDetail,
    policy: Policy,
    deciders: Mapping[str, Decider],
    *,
    valuers: Mapping[str, Valuer],
) -> Redecided:
    """Decide ``detail``'s event under ``policy`` on the facts and context its last run
    recorded."""
    last = detail.runs[-1] if detail.runs else None
    event = facts.from_envelope(detail.event, last.envelope if last else None)
    context = (last.context if last else None) or {}
    return await decide_event(event, context, policy, deciders, valuers=valuers)


async def replay(
    detail: EventDetail,
    policy: Policy,
    deciders: Mapping[str, Decider],
    *,
    valuers: Mapping[str, Valuer],
) -> Replayed:
    """Decide ``detail``'s event again under ``policy`` (dry-run) and compare verdicts."""
    again = await redecide(detail, policy, deciders, valuers=valuers)
    last = detail.runs[-1] if detail.runs else None
    before = Verdict.from_dict(last.verdict) if last and last.verdict is not None else None
    return Replayed(
        event_id=detail.event.event_id,
        route=again.route,
        change=classify(before, again.verdict),
        before=before,
        after=again.verdict,
    )


def _allowed(verdict: Verdict) -> set[str]:
    return {f"{a.step_id}:{a.kind}" for a in verdict.allowed}


def _shape(verdict: Verdict) -> tuple[list[Any], list[Any]]:
    allowed = [(a.step_id, a.kind, a.params) for a in verdict.allowed]
    denied = [(d.action.step_id, d.reason) for d in verdict.denied]
    return allowed, denied


def classify(before: Verdict | None, after: Verdict) -> Change:
    """``newly_denied`` if an action allowed before is not now; ``newly_allowed`` for the
    reverse; ``changed`` for any other difference (parameters, reasons)."""
    if before is None:
        return "no_record"
    was, now = _allowed(before), _allowed(after)
    if was - now:
        return "newly_denied"
    if now - was:
        return "newly_allowed"
    return "unchanged" if _shape(before) == _shape(after) else "changed"
