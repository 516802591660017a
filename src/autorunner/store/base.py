"""The store seams: the source of truth for events, leases, runs, the effect ledger, operator
flags and the journal. Each backend (memory, sqlite, postgres) implements them all (``StoreBackend``);
each part of the runner asks only for the concern it uses:

* ``Events`` — an event's life: inserted if new, leased, finished, brought back (redrive,
  rerun, sweep); every invariant enforced atomically by the backend (insert-if-new on
  ``event_id`` and ``execution_id``, lease compare-and-set), never by check-then-insert.
* ``Ledger`` — the decision pinned to an event and the effect ledger (below).
* ``Flags`` — operator flags every process reads (the kill switch).
* ``Journal`` — operators' acts, workers' heartbeats and the processes' tallies.
* ``Approvals`` — the people's answers an event waits for (``awaiting``).
* ``Spend`` — what the model may still spend today, reserved and settled per budget scope.
* ``Audit`` — read-only queries for the CLI, the console and metrics.

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

from collections.abc import Mapping
from typing import Any, Protocol

from autorunner.events import Event
from autorunner.records import (
    Answered,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalView,
    DeadLetterView,
    EffectIntent,
    EffectState,
    EffectStatus,
    EventDetail,
    EventStatus,
    EventSummary,
    InsertResult,
    Leased,
    Operation,
    Pin,
    RawDelivery,
    RejectedView,
    Resolved,
    RunRecord,
    SpendClaim,
    SpendView,
    StoreStats,
    WorkerBeat,
)


class Events(Protocol):
    """An event's life. Every method of every store seam raises ``StoreUnavailable`` when the
    backend cannot answer."""

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

    async def finish(
        self,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Append a run record and, while ``owner`` holds the event, move it on: ``done``,
        ``pending`` at ``retry_at``, or ``dead`` (filed with ``reason``). Run records are never
        overwritten: a redriven event keeps the runs of its earlier life. The event's job is
        the caller's (``Outbox.settle`` does both)."""

    async def redrive(
        self, event_id: str | None, *, operation: Operation | None = None
    ) -> list[str]:
        """Move one dead event (or all when ``None``) back to ``pending`` with a fresh attempt
        count; ``operation`` is journaled for each one moved, in the same transaction."""

    async def rerun(
        self, event_id: str, *, operation: Operation, decision: dict[str, Any] | None = None
    ) -> int | None:
        """Start a new decision generation of a finished (``done`` or ``dead``) event: unpinned,
        or pinned to ``decision``, back to ``pending`` with a fresh attempt count. Journals
        ``operation``; returns the new generation, ``None`` when the event is missing or not
        finished."""

    async def sweepable(self, *, older_than: float, limit: int) -> list[str]:
        """Unfinished, unleased events due before ``older_than``: candidates to re-enqueue."""

    async def record_rejected(self, reason: str, raw: RawDelivery) -> None:
        """Keep an authentic delivery we could not parse, for inspection."""

    async def close(self) -> None:
        """Release connections and threads."""


class Ledger(Protocol):
    """The decision pinned to each event and the effect ledger (see the module docstring)."""

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

    async def begin_first_effect(
        self, intent: EffectIntent, pin: Pin, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState | None:
        """``pin_decision`` and ``begin_effect`` in one transaction: an attempt's first effect
        begins with its decision pinned (one wait on the store where the backend allows). The
        intent is recorded only when ``pin.decision`` is the one kept; ``None`` when nothing
        was begun: ``pin.owner`` no longer holds the event in ``pin.generation``, or another
        decision was pinned first (the next attempt reads it with its lease and acts on it)."""

    async def effect_sending(self, effect_key: str, *, tries: int) -> bool:
        """A ``planned`` effect's request is about to leave: from now on it may reach the
        remote. False when this try lost the effect (another attempt took it over since
        ``begin_effect`` returned ``tries``): the request must not leave."""

    async def finish_effect(
        self, effect_key: str, *, status: EffectStatus, result: dict[str, Any]
    ) -> None:
        """Record an effect's outcome."""

    async def resolve_effect(
        self, effect_key: str, *, resend: bool, operation: Operation
    ) -> Resolved | None:
        """An operator settles an ``unknown`` effect: it was sent (``done``), or it must be sent
        again (``planned``, and its finished event back to ``pending`` with a fresh attempt
        count, on the same pinned decision). Journals ``operation``. ``None`` for no such key;
        an effect that is not ``unknown`` is left as it is (``Resolved.status`` says what it
        is), and so is one that cannot be resent now (``Resolved.refused`` says why)."""


class Journal(Protocol):
    """Operators' acts and workers' heartbeats."""

    async def record_operation(self, operation: Operation) -> None:
        """Journal an operator's act that changes no stored state."""

    async def add_tallies(self, minute: int, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (name → how many) to the tallies of ``minute`` (seconds since the
        epoch // 60); tallies older than ``TALLY_RETENTION`` go. Each process flushes what its
        counters gained (``tallies.keep``), so the overview sums what every process saw."""

    async def beat(self, worker: WorkerBeat) -> None:
        """Record a worker's heartbeat (and forget workers silent past ``WORKER_RETENTION``)."""

    async def forget_worker(self, name: str) -> None:
        """A worker stopped cleanly: it is no longer listed."""


class Flags(Protocol):
    """Operator flags shared by every process of a store."""

    async def set_flag(
        self, name: str, value: str | None, *, operation: Operation | None = None
    ) -> None:
        """Set (or with ``None`` clear) an operator flag shared by every process, e.g. ``paused``;
        ``operation`` is journaled in the same transaction."""

    async def get_flag(self, name: str) -> str | None:
        """The flag's value, ``None`` when unset."""

    async def lead(self, name: str, *, owner: str, ttl: float) -> bool:
        """Hold the lease called ``name`` for ``ttl`` more seconds: True when ``owner`` now holds
        it (it was free, lapsed, or already ``owner``'s), False while another holds it. One
        process of many does a job this way (the alert notifier)."""


class Approvals(Protocol):
    """Approvals asked of people, durable: a request survives restarts and takeovers, the first
    answer wins, and the answer moves its ``awaiting`` event back to ``pending``."""

    async def request_approval(self, request: ApprovalRequest) -> ApprovalView:
        """Ask once: kept unless an approval with ``request.approval_id`` exists; the approval
        as it stands (perhaps answered already)."""

    async def answer_approval(
        self, approval_id: str, *, approve: bool, by: str, via: str, reason: str | None, at: float
    ) -> Answered | None:
        """Decide a pending approval — compare-and-set: the first answer wins, a later one
        changes nothing — and in the same transaction journal it and move its event from
        ``awaiting`` back to ``pending``. ``None`` when there is no such approval."""

    async def expire_approvals(self, *, now: float, limit: int) -> list[str]:
        """Answer the pending approvals past their ``expires_at`` as their ``on_timeout`` says
        (``via="timeout"``), as ``answer_approval`` does, and move back to ``pending`` any
        ``awaiting`` event whose approval is answered (an answer that raced its parking); the
        ids of the events moved, for the caller to queue."""

    async def mark_notified(self, approval_id: str, message: dict[str, Any]) -> None:
        """Record where the request was sent, so it is sent once."""

    async def get_approval(self, approval_id: str) -> ApprovalView | None:
        """One approval."""

    async def list_approvals(
        self,
        *,
        limit: int,
        status: ApprovalStatus | None = None,
        unnotified: bool = False,
        event_id: str | None = None,
    ) -> list[ApprovalView]:
        """Newest first, of one event with ``event_id``; ``unnotified``: pending ones whose
        request was not sent yet, oldest first."""


class Spend(Protocol):
    """The model's spend per budget scope and UTC day: reserved before a call, settled after."""

    async def reserve_spend(self, day: str, claims: list[SpendClaim]) -> str | None:
        """Reserve every claim or none, atomically across processes: ``None`` when reserved,
        else the first claim's scope that would pass its limit (nothing is reserved then)."""

    async def settle_spend(
        self, day: str, claims: list[SpendClaim], *, micro_usd: int, tokens: int
    ) -> None:
        """Release ``claims``' reservations of ``day`` and count what was spent instead."""

    async def spend_of(self, day: str) -> list[SpendView]:
        """Every scope's spend of ``day``."""


class Store(Events, Ledger, Flags, Journal, Approvals, Spend, Protocol):
    """Every write-side seam of one backend."""


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
        symbol: str | None = None,
    ) -> list[EventSummary]:
        """Newest first; ``since``/``until`` bound the receive time (inclusive, exclusive);
        ``symbol`` is the event's (its trigger's) symbol."""

    async def count_received(self, *, since: float, cap: int) -> int:
        """How many events were received from ``since`` on, counting no further than ``cap``."""

    async def get_event(self, event_id: str) -> EventDetail | None:
        """The whole record of one event."""

    async def find_event(self, any_id: str) -> str | None:
        """The stored id of the event a user names by any id they hold: its stored id, its
        execution id, the id its first delivery carried, or that of a duplicate delivery."""

    async def list_dead_letters(
        self, *, limit: int, reason: str | None = None, route: str | None = None
    ) -> list[DeadLetterView]:
        """Newest first; ``reason`` keeps those whose reason contains it (as written, case and
        all), ``route`` those of events decided by that route."""

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

    async def tallies(self, *, since_minute: int) -> dict[str, int]:
        """Every tally's sum over the minutes from ``since_minute`` on."""

    async def stats(self, *, done: bool = True) -> StoreStats:
        """Counts by status for ``status`` and metrics. ``done=False`` leaves out the count of
        finished events, the one that needs a pass over the whole table: what ``/metrics``
        asks for on every scrape of every process."""


class StoreBackend(Store, Audit, Protocol):
    """What a store backend class implements."""
