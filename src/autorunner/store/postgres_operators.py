"""What operators read and do on the PostgreSQL store: the audit queries (events, effects, dead
letters, rejected deliveries, workers, stats), the journal, and the acts that change what runs
(resolve an unknown effect, rerun an event, worker heartbeats)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg.types.json import Jsonb

from autorunner.clock import Clock
from autorunner.events import Event
from autorunner.postgresdb import Conn
from autorunner.records import (
    DeadLetterView,
    EffectStatus,
    EventDetail,
    EventStatus,
    EventSummary,
    Operation,
    RawDelivery,
    RejectedView,
    Resolved,
    RunRecord,
    StoreStats,
    WorkerBeat,
)
from autorunner.store.rules import TALLY_RETENTION, WORKER_RETENTION, resend_refusal, resolution
from autorunner.store.sql import (
    EFFECT_COLUMNS,
    OPERATION_COLUMNS,
    WORKER_COLUMNS,
    effect_from_row,
    event_filters,
    operation_from_row,
    rejected_from_row,
    summary_columns,
    summary_from_row,
    worker_from_row,
)

SUMMARY_COLUMNS = summary_columns("string_agg")
FIND_EVENT = (
    "SELECT event_id FROM events WHERE event_id = %(id)s"
    " UNION ALL SELECT event_id FROM events WHERE execution_id = %(id)s"
    " UNION ALL SELECT event_id FROM aliases WHERE alias = %(id)s"
    " UNION ALL SELECT event_id FROM events WHERE delivery_id = %(id)s LIMIT 1"
)
"""Indexed lookups first; the first delivery's own id last, by a scan: an index on it would
cost every webhook a B-tree insert for a lookup only an operator makes."""

SYMBOL = "event_json->>'symbol'"
"""The event's symbol, kept in its JSON (``list_events(symbol=...)``)."""


class PostgresOperators:
    """The operators' half of ``PostgresStore`` (which it is mixed into)."""

    _tx: Callable[..., AbstractAsyncContextManager[Conn]]
    _clock: Clock

    async def resolve_effect(
        self, effect_key: str, *, resend: bool, operation: Operation
    ) -> Resolved | None:
        async with self._tx(atomic=True) as conn:
            cur = await conn.execute(
                "SELECT f.event_id, f.status, e.status, e.generation FROM effects f"
                " LEFT JOIN events e ON e.event_id = f.event_id WHERE f.effect_key = %s"
                " FOR UPDATE OF f",
                (effect_key,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            event_id, status, event_status, generation = row
            if status != "unknown":
                return Resolved(event_id=event_id, status=status)
            refused = resend_refusal(effect_key, event_status=event_status, generation=generation)
            if resend and refused is not None:
                return Resolved(event_id=event_id, status=status, refused=refused)
            await self._journal(conn, operation)
            if not resend:
                await conn.execute(
                    "UPDATE effects SET status = 'done', result_json = %s, updated_at = %s"
                    " WHERE effect_key = %s",
                    (Jsonb(resolution(operation)), operation.at, effect_key),
                )
                return Resolved(event_id=event_id, status=status)
            await conn.execute(
                "UPDATE effects SET status = 'planned', updated_at = %s WHERE effect_key = %s",
                (operation.at, effect_key),
            )
            reopened = (
                await self._reopen(conn, event_id, operation.at, ", attempts = 0") is not None
            )
        return Resolved(event_id=event_id, status=status, reopened=reopened)

    async def rerun(
        self, event_id: str, *, operation: Operation, decision: dict[str, Any] | None = None
    ) -> int | None:
        also = ", attempts = 0, generation = generation + 1, decision_json = %(decision)s"
        async with self._tx(atomic=True) as conn:
            generation = await self._reopen(
                conn,
                event_id,
                operation.at,
                also,
                {"decision": None if decision is None else Jsonb(decision)},
            )
            if generation is not None:
                await self._journal(conn, operation)
        return generation

    @staticmethod
    async def _reopen(
        conn: Conn, event_id: str, now: float, also: str, args: dict[str, Any] | None = None
    ) -> int | None:
        """A finished event back to ``pending`` (``also`` sets more columns); its generation,
        ``None`` when it is not finished."""
        cur = await conn.execute(
            (
                "UPDATE events SET status = 'pending', available_at = %(now)s,"
                f" finished_at = NULL{also} WHERE event_id = %(id)s"
                " AND status IN ('done', 'dead') RETURNING generation"
            ).encode(),
            {"now": now, "id": event_id, **(args or {})},
        )
        row = await cur.fetchone()
        if row is None:
            return None
        await conn.execute("DELETE FROM dead_letters WHERE event_id = %s", (event_id,))
        return int(row[0])

    @classmethod
    async def _journal(cls, conn: Conn, operation: Operation) -> None:
        await cls._journal_each(conn, [operation])

    @staticmethod
    async def _journal_each(conn: Conn, operations: list[Operation]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO operations (at, actor, action, event_id, target, detail_json)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (o.at, o.actor, o.action, o.event_id, o.target, Jsonb(o.detail))
                    for o in operations
                ],
            )

    async def record_operation(self, operation: Operation) -> None:
        async with self._tx() as conn:
            await self._journal(conn, operation)

    async def add_tallies(self, minute: int, counts: Mapping[str, int]) -> None:
        async with self._tx(atomic=True) as conn:
            await conn.execute(
                "INSERT INTO tallies (minute, name, count)"
                " SELECT %s, * FROM unnest(%s::text[], %s::bigint[])"
                " ON CONFLICT (minute, name) DO UPDATE SET count = tallies.count + excluded.count",
                (minute, list(counts), list(counts.values())),
            )
            await conn.execute("DELETE FROM tallies WHERE minute < %s", (minute - TALLY_RETENTION,))

    async def tallies(self, *, since_minute: int) -> dict[str, int]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT name, sum(count) FROM tallies WHERE minute >= %s GROUP BY name",
                (since_minute,),
            )
            rows = await cur.fetchall()
        return {name: int(total) for name, total in rows}

    async def beat(self, worker: WorkerBeat) -> None:
        async with self._tx() as conn:
            await conn.execute(
                f"WITH gone AS (DELETE FROM workers WHERE heartbeat_at < %(cutoff)s)"
                f" INSERT INTO workers ({WORKER_COLUMNS}) VALUES (%(name)s, %(role)s,"
                " %(started)s, %(at)s, %(in_flight)s) ON CONFLICT (name) DO UPDATE SET"
                " heartbeat_at = excluded.heartbeat_at, in_flight = excluded.in_flight",
                {
                    "cutoff": worker.heartbeat_at - WORKER_RETENTION,
                    "name": worker.name,
                    "role": worker.role,
                    "started": worker.started_at,
                    "at": worker.heartbeat_at,
                    "in_flight": worker.in_flight,
                },
            )

    async def forget_worker(self, name: str) -> None:
        async with self._tx() as conn:
            await conn.execute("DELETE FROM workers WHERE name = %s", (name,))

    async def list_workers(self) -> list[WorkerBeat]:
        async with self._tx() as conn:
            cur = await conn.execute(
                f"SELECT {WORKER_COLUMNS} FROM workers ORDER BY heartbeat_at DESC"
            )
            return [worker_from_row(r) for r in await cur.fetchall()]

    async def list_rejected(self, *, limit: int) -> list[RejectedView]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT id, reason, raw_json FROM rejected ORDER BY id DESC LIMIT %s", (limit,)
            )
            return [rejected_from_row(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def list_operations(self, *, limit: int, event_id: str | None = None) -> list[Operation]:
        where = " WHERE event_id = %(event)s" if event_id is not None else ""
        async with self._tx() as conn:
            cur = await conn.execute(
                f"SELECT {OPERATION_COLUMNS} FROM operations{where} ORDER BY id DESC LIMIT %(n)s".encode(),
                {"event": event_id, "n": limit},
            )
            return [operation_from_row(r, lambda v: v) for r in await cur.fetchall()]

    async def list_effects(
        self, *, limit: int, status: EffectStatus | None = None
    ) -> list[dict[str, Any]]:
        where = " WHERE status = %(status)s" if status is not None else ""
        async with self._tx() as conn:
            cur = await conn.execute(
                (
                    f"SELECT {EFFECT_COLUMNS}, event_id FROM effects{where}"
                    " ORDER BY updated_at DESC LIMIT %(n)s"
                ).encode(),
                {"status": status, "n": limit},
            )
            rows = await cur.fetchall()
        return [effect_from_row(r, lambda v: v) | {"event_id": r[-1]} for r in rows]

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
        filters = {
            "status": status,
            "since": since,
            "until": until,
            "query_id": query_id,
            "route": route,
            "symbol": symbol,
        }
        where = event_filters(lambda name: f"%({name})s", filters, symbol=SYMBOL)
        if status in ("pending", "running", "awaiting"):  # through the unfinished events' index
            where += " AND finished_at IS NULL"
        query = (
            f"SELECT {SUMMARY_COLUMNS} FROM events{where} ORDER BY received_at DESC LIMIT %(limit)s"
        )
        async with self._tx() as conn:
            cur = await conn.execute(query.encode(), {**filters, "limit": limit})
            return [summary_from_row(r) for r in await cur.fetchall()]

    async def count_received(self, *, since: float, cap: int) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE received_at >= %s LIMIT %s) AS r",
                (since, cap),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def get_event(self, event_id: str) -> EventDetail | None:
        async with self._tx(atomic=True) as conn:
            cur = await conn.execute(
                f"SELECT event_json, raw_json, generation, {SUMMARY_COLUMNS} FROM events"
                " WHERE event_id = %s",
                (event_id,),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(
                "SELECT record_json FROM runs WHERE event_id = %s ORDER BY run_id", (event_id,)
            )
            runs = await cur.fetchall()
            cur = await conn.execute(
                f"SELECT {EFFECT_COLUMNS} FROM effects WHERE event_id = %s ORDER BY created_at",
                (event_id,),
            )
            effects = await cur.fetchall()
            cur = await conn.execute(
                "SELECT reason FROM dead_letters WHERE event_id = %s", (event_id,)
            )
            dead = await cur.fetchone()
            cur = await conn.execute(
                f"SELECT {OPERATION_COLUMNS} FROM operations WHERE event_id = %s ORDER BY id",
                (event_id,),
            )
            operations = await cur.fetchall()
        return EventDetail(
            summary=summary_from_row(row[3:]),
            event=Event.from_dict(row[0]),
            raw=RawDelivery(**row[1]),
            runs=[RunRecord(**r[0]) for r in runs],
            effects=[effect_from_row(e, lambda value: value) for e in effects],
            dead_reason=dead[0] if dead else None,
            generation=row[2],
            operations=[operation_from_row(o, lambda v: v) for o in operations],
        )

    async def find_event(self, any_id: str) -> str | None:
        async with self._tx() as conn:
            cur = await conn.execute(FIND_EVENT, {"id": any_id})
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def list_dead_letters(
        self, *, limit: int, reason: str | None = None, route: str | None = None
    ) -> list[DeadLetterView]:
        where = [
            *(["strpos(d.reason, %(reason)s) > 0"] if reason is not None else []),
            *(["e.route = %(route)s"] if route is not None else []),
        ]
        query = (
            "SELECT d.event_id, d.reason, d.attempts, d.dead_at FROM dead_letters d"
            + (" JOIN events e USING (event_id) WHERE " if where else "")
            + " AND ".join(where)
            + " ORDER BY d.dead_at DESC LIMIT %(limit)s"
        )
        async with self._tx() as conn:
            cur = await conn.execute(
                query.encode(), {"reason": reason, "route": route, "limit": limit}
            )
            rows = await cur.fetchall()
        return [
            DeadLetterView(event_id=r[0], reason=r[1], attempts=r[2], dead_at=r[3]) for r in rows
        ]

    async def stats(self, *, done: bool = True) -> StoreStats:
        async with self._tx(atomic=True) as conn:
            if done:
                cur = await conn.execute("SELECT status, count(*) FROM events GROUP BY status")
                counts = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
            else:  # the unfinished through their partial index; the dead from their own table
                cur = await conn.execute(
                    "SELECT status, count(*) FROM events"
                    " WHERE finished_at IS NULL AND status IN ('pending', 'running')"
                    " GROUP BY status"
                )
                counts = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
                cur = await conn.execute("SELECT count(*) FROM dead_letters")
                dead = await cur.fetchone()
                counts |= {"dead": int(dead[0])} if dead and dead[0] else {}
            cur = await conn.execute(
                "SELECT min(received_at) FROM events"
                " WHERE finished_at IS NULL AND status IN ('pending', 'running')"
            )
            oldest = await cur.fetchone()
            cur = await conn.execute("SELECT count(*) FROM rejected")
            rejected = await cur.fetchone()
            cur = await conn.execute("SELECT count(*) FROM effects WHERE status = 'unknown'")
            unknown = await cur.fetchone()
            cur = await conn.execute(
                "SELECT count(*) FROM events"
                " WHERE finished_at IS NULL AND status = 'running' AND lease_until <= %s",
                (self._clock(),),
            )
            lapsed = await cur.fetchone()
            duplicates = None
            if done:
                cur = await conn.execute("SELECT coalesce(sum(duplicates), 0) FROM events")
                duplicates = await cur.fetchone()
        return StoreStats(
            counts=counts,
            oldest_unfinished_at=oldest[0] if oldest else None,
            rejected=int(rejected[0]) if rejected else 0,
            unknown_effects=int(unknown[0]) if unknown else 0,
            lapsed_leases=int(lapsed[0]) if lapsed else 0,
            duplicates=int(duplicates[0]) if duplicates else 0,
        )
