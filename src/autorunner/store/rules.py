"""The store's rules, the same for every backend (pure): the ledger's transitions, effect keys
and their generations, which ids a duplicate delivery adds, what an operator's resolution
records, and the windows the stores count in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autorunner.events import Event
from autorunner.records import ApprovalView, EffectStatus, Operation, SpendClaim, SpendView

WORKER_RETENTION = 86400.0
"""A worker that sent no heartbeat for this long is forgotten."""

TALLY_RETENTION = 7 * 1440
"""Minutes of tallies kept (a week); older ones are deleted as new ones are added."""

BUDGET_WINDOW = 3600.0
"""A route's ``max_effects_per_hour`` counts the effects it began in this many seconds."""


def key_generation(key: str) -> int:
    """The decision generation an effect key belongs to (``effect_key``'s inverse)."""
    _, _, tail = key.rpartition(":")
    _, sep, number = tail.partition("~")
    return int(number) if sep and number.isdigit() else 1


def resend_refusal(key: str, *, event_status: str | None, generation: int | None) -> str | None:
    """Why an unknown effect cannot be sent again now, or ``None``."""
    if event_status is None or generation is None:
        return "its event no longer exists"
    if key_generation(key) != generation:
        return (
            f"effect {key!r} belongs to decision generation {key_generation(key)}, but its event"
            f" has been rerun since (generation {generation}): it would never be performed"
        )
    if event_status not in ("done", "dead"):
        return f"its event is {event_status}: wait until it finishes, then resend"
    return None


def effect_key(event_id: str, step_id: str, generation: int = 1) -> str:
    """``"{event_id}:{step_id}"``, with ``~{generation}`` from the second generation on. Step ids
    hold neither ``:`` nor ``~``, so keys of different events or generations never collide."""
    key = f"{event_id}:{step_id}"
    return key if generation == 1 else f"{key}~{generation}"


def retaken_status(
    status: EffectStatus, *, at_least_once: bool, staged: bool = False
) -> EffectStatus | None:
    """The ledger's rule for a key it has seen before: the status to record now, or ``None`` to
    leave the entry as it is (``done``; ``unknown`` for an at-most-once adapter).

    Perform it again (``planned`` when ``staged``, else ``pending``) after a known failure, when
    the request never left (``planned``), or when an outcome a crash left open belongs to an
    ``at_least_once`` adapter. ``unknown`` marks an open outcome an at-most-once adapter must
    never resend.
    """
    if status in ("failed", "planned") or (status in ("pending", "unknown") and at_least_once):
        return "planned" if staged else "pending"
    if status == "pending":
        return "unknown"
    return None


def aliases(event: Event, existing_id: str) -> list[str]:
    """The ids a duplicate delivery of ``existing_id`` carried that do not name it already."""
    return sorted({i for i in (event.event_id, event.delivery_id) if i and i != existing_id})


def entry_status(staged: bool) -> EffectStatus:
    """A new ledger entry's status: ``planned`` when the adapter marks its sending itself."""
    return "planned" if staged else "pending"


def resolution(operation: Operation) -> dict[str, Any]:
    """The result recorded for an ``unknown`` effect an operator declares sent."""
    return {"resolved": "sent", "by": operation.actor, "at": operation.at, **operation.detail}


def proceeds(status: EffectStatus | None) -> bool:
    """Whether a ledger status returned by ``begin_effect`` means "perform it now"."""
    return status in ("planned", "pending")


def answer_operation(
    view: ApprovalView, *, approve: bool, by: str, via: str, reason: str | None, at: float
) -> Operation:
    """The journal's line for an approval's answer (a timeout's included)."""
    action = (
        "approval.timeout" if via == "timeout" else f"approval.{'approve' if approve else 'reject'}"
    )
    detail = {"via": via, "approved": approve} | ({"reason": reason} if reason else {})
    return Operation(
        at=at,
        actor=by,
        action=action,
        event_id=view.event_id,
        target=view.approval_id,
        detail=detail,
    )


def answered(
    view: ApprovalView, *, approve: bool, by: str, via: str, reason: str | None, at: float
) -> ApprovalView:
    """``view`` as this answer leaves it."""
    return replace(
        view,
        status="expired" if via == "timeout" else ("approved" if approve else "rejected"),
        approved=approve,
        answered_by=by,
        answered_via=via,
        answered_at=at,
        reason=reason,
    )


def over_limit(claim: SpendClaim, found: SpendView) -> bool:
    """Whether ``claim`` would take its scope past a limit, given what ``found`` holds."""
    usd = found.spent_micro_usd + found.reserved_micro_usd + claim.micro_usd
    tokens = found.spent_tokens + found.reserved_tokens + claim.tokens
    return (claim.limit_micro_usd is not None and usd > claim.limit_micro_usd) or (
        claim.limit_tokens is not None and tokens > claim.limit_tokens
    )


def in_time(
    view: ApprovalView, *, approve: bool, by: str, via: str, reason: str | None, at: float
) -> tuple[bool, str, str, str | None]:
    """The answer that counts: a person's, or — past ``expires_at`` — the timeout's, whatever
    the late answer said (the policy says silence until then means ``on_timeout``)."""
    if via == "timeout" or at < view.expires_at:
        return approve, by, via, reason
    return view.on_timeout == "approve", "timeout", "timeout", f"{by} via {via} answered late"
