"""The in-memory store: the twin of the durable backends for unit tests (same contract suite).

Every method body runs without an ``await`` in the middle, so on one event loop each is atomic,
as the backends' single statements are.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from autorunner.clock import Clock, system_clock
from autorunner.errors import StoreUnavailable
from autorunner.events import Event
from autorunner.records import (
    ApprovalView,
    DeadLetterView,
    EffectIntent,
    EffectState,
    EffectStatus,
    EventSummary,
    InsertResult,
    Leased,
    Operation,
    Pin,
    RawDelivery,
    RejectedView,
    Resolved,
    RunRecord,
    SpendView,
    WorkerBeat,
)
from autorunner.store.memory_approvals import MemoryApprovals
from autorunner.store.memory_audit import MemoryAudit, Row
from autorunner.store.memory_spend import MemorySpend
from autorunner.store.rules import (
    BUDGET_WINDOW,
    TALLY_RETENTION,
    WORKER_RETENTION,
    aliases,
    entry_status,
    proceeds,
    resend_refusal,
    resolution,
    retaken_status,
)


class MemoryStore(MemoryAudit, MemoryApprovals, MemorySpend):
    """``Store`` and ``Audit`` in dictionaries; ``available`` can be switched off to test outages."""

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._events: dict[str, Row] = {}
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
        self._events[event.event_id] = Row(summary=summary, event=event, raw=raw, available_at=now)
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

    async def begin_first_effect(
        self, intent: EffectIntent, pin: Pin, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState | None:
        # Neither call awaits anything: no other task runs between them.
        kept = await self.pin_decision(
            intent.event_id, pin.decision, owner=pin.owner, generation=pin.generation
        )
        if kept != pin.decision:
            return None
        return await self.begin_effect(intent, at_least_once=at_least_once, staged=staged)

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

    def _reopen(self, row: Row, now: float) -> None:
        row.summary = replace(row.summary, status="pending", finished_at=None)
        row.available_at = now
        self._dead.pop(row.summary.event_id, None)

    def _resume(self, event_id: str, at: float) -> bool:
        """Move an ``awaiting`` event back to ``pending`` (``MemoryApprovals``' hook)."""
        row = self._events.get(event_id)
        if row is None or row.summary.status != "awaiting":
            return False
        row.summary = replace(row.summary, status="pending")
        row.available_at = at
        return True

    def _awaiting(self) -> list[str]:
        return [i for i, row in self._events.items() if row.summary.status == "awaiting"]

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
