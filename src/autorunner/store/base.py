"""The ``Store`` seam: the source of truth for events, leases, runs, the effect ledger and dead letters.

Two narrow Protocols, implemented together by each backend (memory, sqlite; postgres later):

* ``Store`` — the write path used by ingress and workers; every invariant is enforced
  atomically by the backend (insert-if-new on ``event_id`` and ``execution_id``, lease
  compare-and-set, ledger transitions), never by check-then-insert in Python.
* ``Audit`` — read-only queries for the CLI, the admin API and metrics.

Event lifecycle: ``pending`` → (acquire) ``running`` → ``done`` | ``pending`` (retry at a time) |
``dead``; ``redrive`` moves ``dead`` back to ``pending``.

Effect ledger, one row per effect key (``"{event_id}:{step_id}"``, and ``~{n}`` after it from
the second decision generation on, ``autorunner events rerun``):

* ``planned`` — intent recorded (and counted in the route's budget); the request has not left
  the process. An adapter that waits before sending (Telegram's send slots) begins here and marks
  the moment its request leaves with ``effect_sending``. A crash or a cancel here is harmless:
  the next attempt performs the effect normally, whatever the adapter's delivery.
* ``pending`` — the request may have reached the remote; its outcome is not known yet.
* ``done`` | ``failed`` (known not to have happened; may run again).
* ``unknown`` — a crash left it ``pending`` and the adapter is at-most-once: never resent by
  itself. Only an operator settles it (``resolve_effect``: it was sent, or send it again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from autorunner.events import Event

EventStatus = Literal["pending", "running", "done", "dead"]
EffectStatus = Literal["planned", "pending", "done", "failed", "unknown", "over_budget"]
Outcome = Literal["done", "retry", "dead"]


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
    """``inserted`` is False for a duplicate; ``existing_id`` then names the stored event.

    ``queued`` is True when the store also queued the event in the same transaction (a store
    built with an outbox writer), so the caller need not enqueue it.
    """

    inserted: bool
    existing_id: str | None = None
    queued: bool = False


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class Store(Protocol):
    """The write path. Every method raises ``StoreUnavailable`` when the backend cannot answer."""

    async def ping(self) -> None:
        """Succeed only when the store can take writes."""

    async def insert_event(self, event: Event, raw: RawDelivery) -> InsertResult:
        """Store a new event as ``pending``, atomically unique on ``event_id`` and ``execution_id``."""

    async def acquire(self, event_id: str, *, owner: str, lease: float) -> Leased | None:
        """Lease a ``pending`` (due) or lease-expired event; ``None`` if finished or held by another."""

    async def extend(self, event_ids: list[str], *, owner: str, lease: float) -> None:
        """Push the lease deadline of events this owner holds (the heartbeat)."""

    async def release(self, event_id: str, *, owner: str) -> None:
        """Give a lease back without counting the attempt (graceful shutdown)."""

    async def pin_decision(
        self, event_id: str, decision: dict[str, Any], *, owner: str, generation: int
    ) -> dict[str, Any] | None:
        """Keep the first decision that reached the effects of an event's generation; return
        the one kept, or ``None`` when ``owner`` no longer holds the event in ``generation``
        (its lease lapsed and another attempt took over, or it was rerun): act on nothing.

        Effect keys are made of step ids, so every later attempt (after a crash, a retry or a
        redrive) must act on this decision: a model that answers differently the second time
        would otherwise produce new keys, and the effect would happen twice. ``acquire`` hands
        the kept decision to the next attempt (``Leased.pinned``).
        """

    async def begin_effect(
        self, intent: EffectIntent, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState:
        """Record the intent to perform an effect, or report that it must not run again.

        The intent is ``pending`` (the request leaves at once), or ``planned`` when ``staged``
        (the adapter marks the moment with ``effect_sending``). A ``planned`` row is performed
        again; a ``pending`` row left by a crash becomes ``unknown`` (not resent) unless the
        adapter is ``at_least_once``, in which case it is performed again.
        """

    async def effect_sending(self, effect_key: str, *, tries: int) -> bool:
        """A ``planned`` effect's request is about to leave: from now on it may reach the
        remote. False when this try lost the effect (another attempt took it over since
        ``begin_effect`` returned ``tries``): the request must not leave."""

    async def finish_effect(
        self, effect_key: str, *, status: EffectStatus, result: dict[str, Any]
    ) -> None:
        """Record an effect's outcome."""

    async def finish(
        self,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> bool:
        """Append a run record and move the event on: ``done``, ``pending`` at ``retry_at``, or ``dead``.

        Run records are never overwritten: a redriven event keeps the runs of its earlier life.
        Returns True when the store also settled the event's queue entry in the same transaction
        (a queue sharing the store's database); otherwise the caller acks, retries or
        dead-letters the job on the queue.
        """

    async def redrive(self, event_id: str | None) -> list[str]:
        """Move one dead event (or all when ``None``) back to ``pending`` with a fresh attempt count."""

    async def resolve_effect(
        self, effect_key: str, *, resend: bool, operation: Operation
    ) -> Resolved | None:
        """An operator settles an ``unknown`` effect: it was sent (``done``), or it must be sent
        again (``planned``, and its finished event back to ``pending`` with a fresh attempt
        count, on the same pinned decision). Journals ``operation``. ``None`` for no such key;
        an effect that is not ``unknown`` is left as it is (``Resolved.status`` says what it
        is), and so is one that cannot be resent now (``Resolved.refused`` says why)."""

    async def rerun(
        self, event_id: str, *, operation: Operation, decision: dict[str, Any] | None = None
    ) -> int | None:
        """Start a new decision generation of a finished (``done`` or ``dead``) event: unpinned,
        or pinned to ``decision``, back to ``pending`` with a fresh attempt count. Journals
        ``operation``; returns the new generation, ``None`` when the event is missing or not
        finished."""

    async def record_operation(self, operation: Operation) -> None:
        """Journal an operator's act that changes no event (pause, resume)."""

    async def beat(self, worker: WorkerBeat) -> None:
        """Record a worker's heartbeat (and forget workers silent past ``WORKER_RETENTION``)."""

    async def forget_worker(self, name: str) -> None:
        """A worker stopped cleanly: it is no longer listed."""

    async def sweepable(self, *, older_than: float, limit: int) -> list[str]:
        """Unfinished, unleased events due before ``older_than``: candidates to re-enqueue."""

    async def record_rejected(self, reason: str, raw: RawDelivery) -> None:
        """Keep an authentic delivery we could not parse, for inspection."""

    async def set_flag(self, name: str, value: str | None) -> None:
        """Set (or with ``None`` clear) an operator flag shared by every process, e.g. ``paused``."""

    async def get_flag(self, name: str) -> str | None:
        """The flag's value, ``None`` when unset."""

    async def close(self) -> None:
        """Release connections and threads."""


class Audit(Protocol):
    """Read-only queries over the store."""

    async def list_events(
        self,
        *,
        limit: int,
        status: EventStatus | None = None,
        since: float | None = None,
        until: float | None = None,
        query_id: str | None = None,
        route: str | None = None,
    ) -> list[EventSummary]:
        """Newest first; ``since``/``until`` bound the receive time (inclusive, exclusive)."""

    async def get_event(self, event_id: str) -> EventDetail | None:
        """The whole record of one event."""

    async def find_event(self, any_id: str) -> str | None:
        """The stored id of the event a user names by any id they hold: its stored id, its
        execution id, the id its first delivery carried, or that of a duplicate delivery."""

    async def list_dead_letters(self, *, limit: int) -> list[DeadLetterView]:
        """Newest first."""

    async def list_effects(
        self, *, limit: int, status: EffectStatus | None = None
    ) -> list[dict[str, Any]]:
        """Ledger entries, most recently changed first, with their ``event_id``."""

    async def list_workers(self) -> list[WorkerBeat]:
        """The workers that sent a heartbeat lately, most recent first."""

    async def list_rejected(self, *, limit: int) -> list[RejectedView]:
        """Deliveries kept as rejected, newest first."""

    async def list_operations(self, *, limit: int, event_id: str | None = None) -> list[Operation]:
        """The operators' journal, newest first; ``event_id`` narrows it to one event."""

    async def stats(self, *, done: bool = True) -> StoreStats:
        """Counts by status for ``status`` and metrics. ``done=False`` leaves out the count of
        finished events, the one that needs a pass over the whole table: what ``/metrics``
        asks for on every scrape of every process."""


class Backend(Store, Audit, Protocol):
    """What a store backend class implements."""
