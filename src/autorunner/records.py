"""The records that cross the runner's seams: what the store keeps and hands back, what a run
leaves for the audit, what operators see. Plain frozen values with explicit ``to_dict`` codecs;
no behaviour, no I/O.

Event lifecycle: ``pending`` → (acquire) ``running`` → ``done`` | ``pending`` (retry at a time) |
``dead`` | ``awaiting`` (an approval is asked for); ``redrive`` moves ``dead`` back to
``pending``, an answer (or its timeout) moves ``awaiting`` back. The effect ledger's statuses are
described in ``store/base.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from autorunner.events import Event

EventStatus = Literal["pending", "running", "done", "dead", "awaiting"]
EffectStatus = Literal["planned", "pending", "done", "failed", "unknown", "over_budget"]
Outcome = Literal["done", "retry", "dead", "awaiting"]
ApprovalStatus = Literal["pending", "approved", "rejected", "expired"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RawDelivery:
    """The delivery as received (headers without signatures; body as text)."""

    received_at: float
    headers: dict[str, str]
    body: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class InsertResult:
    """``inserted`` is False for a duplicate; ``existing_id`` then names the stored event."""

    inserted: bool
    existing_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Leased:
    """An event this worker now holds; ``attempt`` is 1 on the first run.

    ``pinned`` is the decision an earlier attempt of this generation pinned (``pin_decision``),
    read in the statement that took the lease; ``generation`` numbers the event's decisions
    (1, then one more per ``rerun``) and is part of its effect keys from 2 on.
    """

    event: Event
    attempt: int
    owner: str
    lease_until: float
    generation: int = 1
    pinned: dict[str, Any] | None = None
    available_at: float | None = None
    """Since when the event waited for a worker (admitted, retry due, or lease lapsed)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Operation:
    """An operator's deliberate act, kept in the store's journal: who, when, what, on what."""

    at: float
    actor: str
    action: str
    event_id: str | None = None
    """The event acted on; ``None`` for acts on the whole runner (pause, resume)."""
    target: str | None = None
    """A narrower target within the event, e.g. an effect key."""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolved:
    """What ``resolve_effect`` found: the effect's event and its status before; ``reopened``
    when the event was finished and now waits to run the effect again."""

    event_id: str
    status: EffectStatus
    reopened: bool = False
    refused: str | None = None
    """Why an ``unknown`` effect cannot be sent again as asked (its event still runs, or has
    been rerun since); nothing was changed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EffectIntent:
    """An effect about to be performed."""

    effect_key: str
    event_id: str
    step_id: str
    kind: str
    params: dict[str, Any]
    route: str | None = None
    budget: int | None = None  # at most this many new effects of ``route`` per hour


@dataclass(frozen=True, kw_only=True, slots=True)
class Pin:
    """An attempt's decision, pinned to its event with the first effect it begins
    (``Ledger.begin_first_effect``) while ``owner`` holds the event in ``generation``."""

    decision: dict[str, Any]
    owner: str
    generation: int


@dataclass(frozen=True, kw_only=True, slots=True)
class EffectState:
    """The ledger's answer to ``begin_effect``.

    ``proceed`` is True when the caller must perform the effect now (first time, or after a
    known failure). Otherwise ``status`` says why not: ``done`` (``result`` holds the earlier
    result), ``unknown`` (a previous attempt crashed mid-effect) or ``over_budget`` (the route's
    hourly budget is spent: nothing was recorded, the effect is denied).
    """

    proceed: bool
    status: EffectStatus
    result: dict[str, Any] | None = None
    tries: int = 0
    """Which try of the effect this is (1 the first time): ``effect_sending`` takes it back."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord:
    """Everything one attempt did for one event: the audit and replay record."""

    event_id: str
    attempt: int
    outcome: Outcome
    started_at: float
    finished_at: float
    route: str | None = None
    envelope: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    effects: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    retry_delay: float | None = None
    generation: int = 1
    """The decision generation the attempt ran in (2 and on after ``events rerun``)."""
    approval: dict[str, Any] | None = None
    """The approval the attempt asked for or acted on (``ApprovalView.to_dict``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequest:
    """A person's answer asked for: the gated ``actions`` of one event's decision generation,
    bound by ``fingerprint`` (``approvals.fingerprint``), whose id derives from all three."""

    approval_id: str
    event_id: str
    generation: int
    fingerprint: str
    route: str
    summary: str
    actions: list[dict[str, Any]]
    approvers: list[str]
    requested_at: float
    expires_at: float
    on_timeout: Literal["deny", "approve"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalView(ApprovalRequest):
    """An approval as the store keeps it: the request, and its answer once there is one
    (``approved`` is the decision that stands, a timeout's included)."""

    status: ApprovalStatus = "pending"
    approved: bool | None = None
    answered_by: str | None = None
    answered_via: str | None = None
    """``telegram``, ``console``, ``cli`` or ``timeout``."""
    answered_at: float | None = None
    reason: str | None = None
    message: dict[str, Any] | None = None
    """Where the request was sent (``chat_id``, ``message_id``); ``None`` until it was."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Answered:
    """What an answer did: ``view`` as it stands now; ``changed`` when this answer decided it
    (a second answer changes nothing); ``resumed`` when its event went back to the queue."""

    view: ApprovalView
    changed: bool
    resumed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class EventSummary:
    """One line of ``events list``."""

    event_id: str
    execution_id: str | None
    query_id: str | None
    event_type: str
    channel: str
    status: EventStatus
    attempts: int
    received_at: float
    finished_at: float | None
    last_error: str | None
    route: str | None = None
    """The route of the last finished attempt."""
    effects: dict[str, int] = field(default_factory=dict)
    """How many of the event's effects are in each ledger status."""
    duplicates: int = 0
    """How many more times the event was delivered (by any channel) after it was stored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class EventDetail:
    """``events show``: the whole audit trail of one event."""

    summary: EventSummary
    event: Event
    raw: RawDelivery
    runs: list[RunRecord]
    effects: list[dict[str, Any]]
    dead_reason: str | None
    generation: int = 1
    operations: list[Operation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary.to_dict(),
            "generation": self.generation,
            "event": self.event.to_dict(),
            "raw": self.raw.to_dict(),
            "runs": [r.to_dict() for r in self.runs],
            "effects": self.effects,
            "dead_reason": self.dead_reason,
            "operations": [o.to_dict() for o in self.operations],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetterView:
    """One dead-lettered event."""

    event_id: str
    reason: str
    attempts: int
    dead_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreStats:
    """Counts by status, the receive time of the oldest unfinished event, and the effects whose
    outcome is ``unknown`` (each needs an operator)."""

    counts: dict[str, int]
    oldest_unfinished_at: float | None
    rejected: int
    unknown_effects: int = 0
    lapsed_leases: int = 0
    """Running events whose lease ran out: their worker died or stalled (the sweeper requeues)."""
    duplicates: int = 0
    """Duplicate deliveries of stored events (counted by ``stats(done=True)`` only)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerBeat:
    """A worker process as its last heartbeat described it."""

    name: str
    role: str
    started_at: float
    heartbeat_at: float
    in_flight: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class RejectedView:
    """An authentic delivery that could not be read as an event, kept for inspection."""

    id: int
    reason: str
    received_at: float
    headers: dict[str, str]
    body: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class SpendClaim:
    """What one decision reserves against one budget scope (``global`` or ``route:<name>``)
    of a day: ``micro_usd`` (millionths of a dollar) and ``tokens``, refused when the scope's
    spent and reserved amounts plus these would pass a limit (``None``: no limit)."""

    scope: str
    micro_usd: int
    tokens: int
    limit_micro_usd: int | None = None
    limit_tokens: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SpendView:
    """One budget scope's day: spent (settled from the provider's usage) and still reserved."""

    scope: str
    spent_micro_usd: int = 0
    spent_tokens: int = 0
    reserved_micro_usd: int = 0
    reserved_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "spent_usd": self.spent_micro_usd / 1e6,
            "spent_tokens": self.spent_tokens,
            "reserved_usd": self.reserved_micro_usd / 1e6,
            "reserved_tokens": self.reserved_tokens,
        }
