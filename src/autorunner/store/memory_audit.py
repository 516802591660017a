"""The in-memory twin's rows and its read-only queries (``store.base.Audit``), mixed into
``MemoryStore``."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from autorunner.clock import Clock
from autorunner.events import Event
from autorunner.records import (
    DeadLetterView,
    EventDetail,
    EventStatus,
    EventSummary,
    Operation,
    RawDelivery,
    RunRecord,
    StoreStats,
)


@dataclass(slots=True)
class Row:
    """One stored event and its lease."""

    summary: EventSummary
    event: Event
    raw: RawDelivery
    available_at: float
    lease_owner: str | None = None
    lease_until: float | None = None
    generation: int = 1


class MemoryAudit:
    """The queries half of ``MemoryStore``."""

    _clock: Clock
    _check: Callable[[], None]
    _events: dict[str, Row]
    _runs: dict[str, list[RunRecord]]
    _effects: dict[str, dict[str, Any]]
    _dead: dict[str, DeadLetterView]
    _rejected: list[tuple[str, RawDelivery]]
    _operations: list[Operation]
    _tallies: dict[int, Counter[str]]
    _aliases: dict[str, str]
    _duplicates: dict[str, int]

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

    def _summary(self, row: Row) -> EventSummary:
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
