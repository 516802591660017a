"""The in-memory store: the twin of the durable backends for unit tests (same contract suite).

Every method body runs without an ``await`` in the middle, so on one event loop each is atomic,
as the backends' single statements are.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from autorunner.clock import Clock, system_clock
from autorunner.errors import StoreUnavailable
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
    RawDelivery,
    RejectedView,
    Resolved,
    RunRecord,
    SpendClaim,
    SpendView,
    StoreStats,
    WorkerBeat,
)
from autorunner.store.rules import (
    BUDGET_WINDOW,
    TALLY_RETENTION,
    WORKER_RETENTION,
    aliases,
    answer_operation,
    answered,
    entry_status,
    in_time,
    over_limit,
    proceeds,
    resend_refusal,
    resolution,
    retaken_status,
)


@dataclass(slots=True)
class _Row:
    summary: EventSummary
    event: Event
    raw: RawDelivery
    available_at: float
    lease_owner: str | None = None
    lease_until: float | None = None
    generation: int = 1


class MemoryStore:
    """``Store`` and ``Audit`` in dictionaries; ``available`` can be switched off to test outages."""

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._events: dict[str, _Row] = {}
        self._by_execution: dict[str, str] = {}
        self._runs: dict[str, list[RunRecord]] = {}
        self._effects: dict[str, dict[str, Any]] = {}
        self._dead: dict[str, DeadLetterView] = {}
        self._rejected: list[tuple[str, RawDelivery]] = []
        self.available = True
        self._flags: dict[str, str] = {}
        self._leads: dict[str, tuple[str, float]] = {}
        self._decisions: dict[str, dict[str, Any]] = {}
        self._operations: list[Operation] = []
        self._tallies: dict[int, Counter[str]] = {}
        self._approvals: dict[str, ApprovalView] = {}
        self._spend: dict[tuple[str, str], SpendView] = {}
        self._aliases: dict[str, str] = {}
        self._workers: dict[str, WorkerBeat] = {}
        self._duplicates: dict[str, int] = {}

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("memory store switched off")

    async def ping(self) -> None:
        self._check()

    async def insert_event(self, event: Event, raw: RawDelivery) -> InsertResult:
        self._check()
        existing = (
            event.event_id
            if event.event_id in self._events
            else self._by_execution.get(event.execution_id or "")
        )
        if existing is not None:
            self._duplicates[existing] = self._duplicates.get(existing, 0) + 1
            for alias in aliases(event, existing):
                self._aliases.setdefault(alias, existing)
            return InsertResult(inserted=False, existing_id=existing)
        now = self._clock()
        summary = EventSummary(
            event_id=event.event_id,
            execution_id=event.execution_id,
            query_id=event.query_id,
            event_type=event.event_type,
            channel=event.channel,
            status="pending",
            attempts=0,
            received_at=now,
            finished_at=None,
            last_error=None,
        )
        self._events[event.event_id] = _Row(summary=summary, event=event, raw=raw, available_at=now)
        if event.execution_id is not None:
            self._by_execution[event.execution_id] = event.event_id
        return InsertResult(inserted=True)

    async def acquire(self, event_id: str, *, owner: str, lease: float) -> Leased | None:
        self._check()
        row = self._events.get(event_id)
        now = self._clock()
        if row is None:
            return None
        status = row.summary.status
        expired = status == "running" and row.lease_until is not None and row.lease_until <= now
        if status != "pending" and not expired:
            return None
        attempts = row.summary.attempts + 1
        row.summary = replace(row.summary, status="running", attempts=attempts)
        row.lease_owner, row.lease_until = owner, now + lease
        pinned = self._decisions.get(event_id)
        return Leased(
            event=row.event,
            attempt=attempts,
            owner=owner,
            lease_until=now + lease,
            generation=row.generation,
            pinned=copy.deepcopy(pinned) if pinned is not None else None,
            available_at=row.available_at,
        )

    async def extend(self, event_ids: list[str], *, owner: str, lease: float) -> None:
        self._check()
        for event_id in event_ids:
            row = self._events.get(event_id)
            if row and row.lease_owner == owner and row.summary.status == "running":
                row.lease_until = self._clock() + lease

    async def release(self, event_id: str, *, owner: str) -> None:
        self._check()
        row = self._events.get(event_id)
        if row and row.lease_owner == owner and row.summary.status == "running":
            row.summary = replace(
                row.summary, status="pending", attempts=max(row.summary.attempts - 1, 0)
            )
            row.lease_owner = row.lease_until = None

    async def begin_effect(
        self, intent: EffectIntent, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState:
        self._check()
        now = self._clock()
        entry = self._effects.get(intent.effect_key)
        if entry is None:
            if intent.budget is not None:
                spent = sum(
                    1
                    for e in self._effects.values()
                    if e["route"] == intent.route and e["created_at"] > now - BUDGET_WINDOW
                )
                if spent >= intent.budget:
                    return EffectState(proceed=False, status="over_budget")
            self._effects[intent.effect_key] = {
                "route": intent.route,
                "effect_key": intent.effect_key,
                "event_id": intent.event_id,
                "step_id": intent.step_id,
                "kind": intent.kind,
                "status": entry_status(staged),
                "tries": 1,
                "params": copy.deepcopy(intent.params),
                "result": None,
                "created_at": now,
                "updated_at": now,
            }
            return EffectState(proceed=True, status=entry_status(staged), tries=1)
        status = entry["status"]
        retaken = retaken_status(status, at_least_once=at_least_once, staged=staged)
        if retaken is None:
            return EffectState(proceed=False, status=status, result=copy.deepcopy(entry["result"]))
        entry.update(status=retaken, tries=entry["tries"] + proceeds(retaken), updated_at=now)
        return EffectState(proceed=proceeds(retaken), status=retaken, tries=entry["tries"])

    async def effect_sending(self, effect_key: str, *, tries: int) -> bool:
        self._check()
        entry = self._effects.get(effect_key)
        if entry is None or entry["status"] != "planned" or entry["tries"] != tries:
            return False
        entry.update(status="pending", updated_at=self._clock())
        return True

    async def finish_effect(
        self, effect_key: str, *, status: EffectStatus, result: dict[str, Any]
    ) -> None:
        self._check()
        entry = self._effects.get(effect_key)
        if entry is not None:
            entry.update(status=status, result=copy.deepcopy(result), updated_at=self._clock())

    async def finish(
        self,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        self._check()
        now = self._clock()
        self._runs.setdefault(run.event_id, []).append(run)
        row = self._events.get(run.event_id)
        if row is None or row.lease_owner != owner or row.summary.status != "running":
            return
        error = reason or run.error
        row.lease_owner = row.lease_until = None
        if run.route is not None:
            row.summary = replace(row.summary, route=run.route)
        if run.outcome == "done":
            row.summary = replace(row.summary, status="done", finished_at=now, last_error=error)
        elif run.outcome == "awaiting":  # not an attempt; waits unless already answered
            asked = self._approvals.get((run.approval or {}).get("approval_id", ""))
            waits = asked is not None and asked.status == "pending"
            row.summary = replace(
                row.summary,
                status="awaiting" if waits else "pending",
                attempts=row.summary.attempts - 1,
                last_error=error,
            )
            row.available_at = now
        elif run.outcome == "retry":
            row.summary = replace(row.summary, status="pending", last_error=error)
            row.available_at = retry_at if retry_at is not None else now
        else:
            row.summary = replace(row.summary, status="dead", finished_at=now, last_error=error)
            self._dead[run.event_id] = DeadLetterView(
                event_id=run.event_id, reason=error or "", attempts=run.attempt, dead_at=now
            )

    async def redrive(
        self, event_id: str | None, *, operation: Operation | None = None
    ) -> list[str]:
        self._check()
        ids = [event_id] if event_id is not None else list(self._dead)
        moved = []
        for i in ids:
            row = self._events.get(i)
            if row is not None and row.summary.status == "dead":
                row.summary = replace(row.summary, status="pending", attempts=0, finished_at=None)
                row.available_at = self._clock()
                self._dead.pop(i, None)
                moved.append(i)
                if operation is not None:
                    self._operations.append(replace(operation, event_id=i))
        return moved

    async def resolve_effect(
        self, effect_key: str, *, resend: bool, operation: Operation
    ) -> Resolved | None:
        self._check()
        entry = self._effects.get(effect_key)
        if entry is None:
            return None
        event_id, status = entry["event_id"], entry["status"]
        if status != "unknown":
            return Resolved(event_id=event_id, status=status)
        now = self._clock()
        row = self._events.get(event_id)
        if resend:
            refused = resend_refusal(
                effect_key,
                event_status=None if row is None else row.summary.status,
                generation=None if row is None else row.generation,
            )
            if refused is not None:
                return Resolved(event_id=event_id, status=status, refused=refused)
        self._operations.append(operation)
        if not resend:
            entry.update(status="done", result=resolution(operation), updated_at=now)
            return Resolved(event_id=event_id, status=status)
        entry.update(status="planned", updated_at=now)
        assert row is not None  # noqa: S101 - a resend of an event that is gone was refused
        row.summary = replace(row.summary, attempts=0)
        self._reopen(row, now)
        return Resolved(event_id=event_id, status=status, reopened=True)

    async def rerun(
        self, event_id: str, *, operation: Operation, decision: dict[str, Any] | None = None
    ) -> int | None:
        self._check()
        row = self._events.get(event_id)
        if row is None or row.summary.status not in ("done", "dead"):
            return None
        row.generation += 1
        row.summary = replace(row.summary, attempts=0)
        self._reopen(row, self._clock())
        self._decisions.pop(event_id, None)
        if decision is not None:
            self._decisions[event_id] = copy.deepcopy(decision)
        self._operations.append(operation)
        return row.generation

    def _reopen(self, row: _Row, now: float) -> None:
        row.summary = replace(row.summary, status="pending", finished_at=None)
        row.available_at = now
        self._dead.pop(row.summary.event_id, None)

    async def request_approval(self, request: ApprovalRequest) -> ApprovalView:
        self._check()
        found = self._approvals.get(request.approval_id)
        if found is None:
            found = ApprovalView(**asdict(request))
            self._approvals[request.approval_id] = found
        return copy.deepcopy(found)

    async def answer_approval(
        self, approval_id: str, *, approve: bool, by: str, via: str, reason: str | None, at: float
    ) -> Answered | None:
        self._check()
        view = self._approvals.get(approval_id)
        if view is None:
            return None
        if view.status != "pending":
            return Answered(view=copy.deepcopy(view), changed=False)
        approve, by, via, reason = in_time(
            view, approve=approve, by=by, via=via, reason=reason, at=at
        )
        view = answered(view, approve=approve, by=by, via=via, reason=reason, at=at)
        self._approvals[approval_id] = view
        self._operations.append(
            answer_operation(view, approve=approve, by=by, via=via, reason=reason, at=at)
        )
        row = self._events.get(view.event_id)
        resumed = row is not None and row.summary.status == "awaiting"
        if row is not None and resumed:
            row.summary = replace(row.summary, status="pending")
            row.available_at = at
        return Answered(view=copy.deepcopy(view), changed=True, resumed=resumed)

    async def expire_approvals(self, *, now: float, limit: int) -> list[str]:
        self._check()
        due = sorted(
            (v for v in self._approvals.values() if v.status == "pending" and v.expires_at <= now),
            key=lambda v: v.expires_at,
        )[:limit]
        moved = []
        for view in due:
            approve = view.on_timeout == "approve"
            found = await self.answer_approval(
                view.approval_id, approve=approve, by="timeout", via="timeout", reason=None, at=now
            )
            if found is not None and found.resumed:
                moved.append(view.event_id)
        waiting = {v.event_id for v in self._approvals.values() if v.status == "pending"}
        for event_id, row in self._events.items():
            if row.summary.status == "awaiting" and event_id not in waiting:
                row.summary = replace(row.summary, status="pending")
                row.available_at = now
                moved.append(event_id)
        return moved[:limit]

    async def mark_notified(self, approval_id: str, message: dict[str, Any]) -> None:
        self._check()
        view = self._approvals.get(approval_id)
        if view is not None:
            self._approvals[approval_id] = replace(view, message=dict(message))

    async def get_approval(self, approval_id: str) -> ApprovalView | None:
        self._check()
        found = self._approvals.get(approval_id)
        return copy.deepcopy(found)

    async def list_approvals(
        self,
        *,
        limit: int,
        status: ApprovalStatus | None = None,
        unnotified: bool = False,
        event_id: str | None = None,
    ) -> list[ApprovalView]:
        self._check()
        if unnotified:
            found = [v for v in self._approvals.values() if v.status == "pending" and not v.message]
            found.sort(key=lambda v: v.requested_at)
        else:
            found = [
                v
                for v in self._approvals.values()
                if (status is None or v.status == status)
                and (event_id is None or v.event_id == event_id)
            ]
            found.sort(key=lambda v: v.requested_at, reverse=True)
        return copy.deepcopy(found[:limit])

    async def reserve_spend(self, day: str, claims: list[SpendClaim]) -> str | None:
        self._check()
        for claim in claims:
            if over_limit(claim, self._spend.get((day, claim.scope), SpendView(scope=claim.scope))):
                return claim.scope
        for claim in claims:
            found = self._spend.get((day, claim.scope), SpendView(scope=claim.scope))
            self._spend[day, claim.scope] = replace(
                found,
                reserved_micro_usd=found.reserved_micro_usd + claim.micro_usd,
                reserved_tokens=found.reserved_tokens + claim.tokens,
            )
        return None

    async def settle_spend(
        self, day: str, claims: list[SpendClaim], *, micro_usd: int, tokens: int
    ) -> None:
        self._check()
        for claim in claims:
            found = self._spend.get((day, claim.scope), SpendView(scope=claim.scope))
            self._spend[day, claim.scope] = replace(
                found,
                reserved_micro_usd=found.reserved_micro_usd - claim.micro_usd,
                reserved_tokens=found.reserved_tokens - claim.tokens,
                spent_micro_usd=found.spent_micro_usd + micro_usd,
                spent_tokens=found.spent_tokens + tokens,
            )

    async def spend_of(self, day: str) -> list[SpendView]:
        self._check()
        return sorted((v for (d, _), v in self._spend.items() if d == day), key=lambda v: v.scope)

    async def record_operation(self, operation: Operation) -> None:
        self._check()
        self._operations.append(operation)

    async def add_tallies(self, minute: int, counts: Mapping[str, int]) -> None:
        self._check()
        self._tallies.setdefault(minute, Counter()).update(counts)
        for old in [m for m in self._tallies if m < minute - TALLY_RETENTION]:
            del self._tallies[old]

    async def beat(self, worker: WorkerBeat) -> None:
        self._check()
        self._workers[worker.name] = worker
        cutoff = worker.heartbeat_at - WORKER_RETENTION
        self._workers = {n: w for n, w in self._workers.items() if w.heartbeat_at >= cutoff}

    async def forget_worker(self, name: str) -> None:
        self._check()
        self._workers.pop(name, None)

    async def list_workers(self) -> list[WorkerBeat]:
        self._check()
        return sorted(self._workers.values(), key=lambda w: w.heartbeat_at, reverse=True)

    async def list_rejected(self, *, limit: int) -> list[RejectedView]:
        self._check()
        return [
            RejectedView(
                id=n, reason=reason, received_at=raw.received_at, headers=raw.headers, body=raw.body
            )
            for n, (reason, raw) in reversed(list(enumerate(self._rejected, start=1)))
        ][:limit]

    async def list_operations(self, *, limit: int, event_id: str | None = None) -> list[Operation]:
        self._check()
        found = [o for o in self._operations if event_id is None or o.event_id == event_id]
        return sorted(found, key=lambda o: o.at, reverse=True)[:limit]

    async def list_effects(
        self, *, limit: int, status: EffectStatus | None = None
    ) -> list[dict[str, Any]]:
        self._check()
        found = [
            {k: copy.deepcopy(v) for k, v in e.items() if k != "route"}
            for e in self._effects.values()
            if status is None or e["status"] == status
        ]
        return sorted(found, key=lambda e: e["updated_at"], reverse=True)[:limit]

    async def sweepable(self, *, older_than: float, limit: int) -> list[str]:
        self._check()
        due = [
            row
            for row in self._events.values()
            if row.available_at <= older_than
            and (
                row.summary.status == "pending"
                or (row.summary.status == "running" and (row.lease_until or 0) <= older_than)
            )
        ]
        due.sort(key=lambda r: r.available_at)
        return [r.summary.event_id for r in due[:limit]]

    async def pin_decision(
        self, event_id: str, decision: dict[str, Any], *, owner: str, generation: int
    ) -> dict[str, Any] | None:
        self._check()
        row = self._events.get(event_id)
        if row is None or row.lease_owner != owner or row.generation != generation:
            return None
        return self._decisions.setdefault(event_id, decision)

    async def set_flag(
        self, name: str, value: str | None, *, operation: Operation | None = None
    ) -> None:
        self._check()
        if value is None:
            self._flags.pop(name, None)
        else:
            self._flags[name] = value
        if operation is not None:
            self._operations.append(operation)

    async def get_flag(self, name: str) -> str | None:
        self._check()
        return self._flags.get(name)

    async def lead(self, name: str, *, owner: str, ttl: float) -> bool:
        self._check()
        now = self._clock()
        holder, until = self._leads.get(name, (owner, now))
        if holder != owner and until > now:
            return False
        self._leads[name] = (owner, now + ttl)
        return True

    async def record_rejected(self, reason: str, raw: RawDelivery) -> None:
        self._check()
        self._rejected.append((reason, raw))

    async def close(self) -> None:
        return None

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
        self._check()
        rows = [
            self._summary(r)
            for r in self._events.values()
            if (status is None or r.summary.status == status)
            and (since is None or r.summary.received_at >= since)
            and (until is None or r.summary.received_at < until)
            and (query_id is None or r.summary.query_id == query_id)
            and (route is None or r.summary.route == route)
            and (symbol is None or r.event.symbol == symbol)
        ]
        return sorted(rows, key=lambda s: s.received_at, reverse=True)[:limit]

    def _summary(self, row: _Row) -> EventSummary:
        """The row's summary with its effects counted by status."""
        statuses = [
            e["status"] for e in self._effects.values() if e["event_id"] == row.event.event_id
        ]
        return replace(
            row.summary,
            effects=dict(Counter(statuses)),
            duplicates=self._duplicates.get(row.event.event_id, 0),
        )

    async def get_event(self, event_id: str) -> EventDetail | None:
        self._check()
        row = self._events.get(event_id)
        if row is None:
            return None
        runs = list(self._runs.get(event_id, []))
        effects = [copy.deepcopy(e) for e in self._effects.values() if e["event_id"] == event_id]
        for effect in effects:
            effect.pop("event_id")
            effect.pop("route")
        dead = self._dead.get(event_id)
        return EventDetail(
            summary=self._summary(row),
            event=row.event,
            raw=row.raw,
            runs=runs,
            effects=effects,
            dead_reason=dead.reason if dead else None,
            generation=row.generation,
            operations=[o for o in self._operations if o.event_id == event_id],
        )

    async def find_event(self, any_id: str) -> str | None:
        self._check()
        if any_id in self._events:
            return any_id
        for row in self._events.values():
            if any_id in (row.event.execution_id, row.event.delivery_id):
                return row.event.event_id
        return self._aliases.get(any_id)

    async def count_received(self, *, since: float, cap: int) -> int:
        self._check()
        return min(cap, sum(r.summary.received_at >= since for r in self._events.values()))

    async def list_dead_letters(
        self, *, limit: int, reason: str | None = None, route: str | None = None
    ) -> list[DeadLetterView]:
        self._check()
        found = [
            d
            for d in self._dead.values()
            if (reason is None or reason in d.reason)
            and (route is None or self._events[d.event_id].summary.route == route)
        ]
        return sorted(found, key=lambda d: d.dead_at, reverse=True)[:limit]

    async def tallies(self, *, since_minute: int) -> dict[str, int]:
        self._check()
        summed: Counter[str] = Counter()
        for minute, counts in self._tallies.items():
            if minute >= since_minute:
                summed.update(counts)
        return dict(summed)

    async def stats(self, *, done: bool = True) -> StoreStats:
        self._check()
        counts: dict[str, int] = {}
        oldest: float | None = None
        for row in self._events.values():
            status = row.summary.status
            if status == "done" and not done:
                continue
            counts[status] = counts.get(status, 0) + 1
            if status in ("pending", "running"):
                received = row.summary.received_at
                oldest = received if oldest is None else min(oldest, received)
        unknown = sum(e["status"] == "unknown" for e in self._effects.values())
        now = self._clock()
        lapsed = sum(
            r.summary.status == "running" and (r.lease_until or 0) <= now
            for r in self._events.values()
        )
        return StoreStats(
            counts=counts,
            oldest_unfinished_at=oldest,
            rejected=len(self._rejected),
            unknown_effects=unknown,
            lapsed_leases=lapsed,
            duplicates=sum(self._duplicates.values()) if done else 0,
        )
