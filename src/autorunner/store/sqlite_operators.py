"""What operators read and do on the SQLite store: the audit queries (events, effects, dead
letters, rejected deliveries, workers, stats), the journal, and the acts that change what runs
(resolve an unknown effect, rerun an event, worker heartbeats)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import orjson

from autorunner.clock import Clock
from autorunner.events import Event
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
from autorunner.sqlitedb import SqliteDatabase
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

SUMMARY_COLUMNS = summary_columns("group_concat")
FIND_EVENT = (
    "SELECT event_id FROM events WHERE event_id = :id"
    " UNION ALL SELECT event_id FROM events WHERE execution_id = :id"
    " UNION ALL SELECT event_id FROM aliases WHERE alias = :id"
    " UNION ALL SELECT event_id FROM events WHERE delivery_id = :id LIMIT 1"
)
"""Indexed lookups first; the first delivery's own id last, by a scan: an index on it would
cost every webhook a B-tree insert for a lookup only an operator makes."""


def dumps(value: Any) -> str:
    """JSON text; orjson encodes our dataclasses natively, with no intermediate dict."""
    return orjson.dumps(value).decode()


SYMBOL = "json_extract(event_json, '$.symbol')"
"""The event's symbol, kept in its JSON (``list_events(symbol=...)``)."""


class SqliteOperators:
    """The operators' half of ``SqliteStore`` (which it is mixed into)."""

    db: SqliteDatabase
    _clock: Clock

    async def resolve_effect(
        self, effect_key: str, *, resend: bool, operation: Operation
    ) -> Resolved | None:
        def op(conn: sqlite3.Connection) -> Resolved | None:
            row = conn.execute(
                "SELECT f.event_id, f.status, e.status, e.generation FROM effects f"
                " LEFT JOIN events e ON e.event_id = f.event_id WHERE f.effect_key = ?",
                (effect_key,),
            ).fetchone()
            if row is None:
                return None
            event_id, status, event_status, generation = row
            if status != "unknown":
                return Resolved(event_id=event_id, status=status)
            refused = resend_refusal(effect_key, event_status=event_status, generation=generation)
            if resend and refused is not None:
                return Resolved(event_id=event_id, status=status, refused=refused)
            self._journal(conn, operation)
            if not resend:
                conn.execute(
                    "UPDATE effects SET status = 'done', result_json = ?, updated_at = ?"
                    " WHERE effect_key = ?",
                    (dumps(resolution(operation)), operation.at, effect_key),
                )
                return Resolved(event_id=event_id, status=status)
            conn.execute(
                "UPDATE effects SET status = 'planned', updated_at = ? WHERE effect_key = ?",
                (operation.at, effect_key),
            )
            reopened = self._reopen(conn, event_id, operation.at, ", attempts = 0")
            return Resolved(event_id=event_id, status=status, reopened=reopened)

        return await self.db.write(op)

    async def rerun(
        self, event_id: str, *, operation: Operation, decision: dict[str, Any] | None = None
    ) -> int | None:
        pinned = None if decision is None else dumps(decision)

        def op(conn: sqlite3.Connection) -> int | None:
            if not self._reopen(
                conn,
                event_id,
                operation.at,
                ", attempts = 0, generation = generation + 1, decision_json = ?",
                (pinned,),
            ):
                return None
            self._journal(conn, operation)
            row = conn.execute(
                "SELECT generation FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            return int(row[0])

        return await self.db.write(op)

    def _reopen(
        self,
        conn: sqlite3.Connection,
        event_id: str,
        now: float,
        also: str,
        args: tuple[Any, ...] = (),
    ) -> bool:
        """A finished event back to ``pending`` (``also`` sets more columns); False when it is
        not finished. The caller queues it (and the sweeper would)."""
        cur = conn.execute(
            f"UPDATE events SET status = 'pending', available_at = ?, finished_at = NULL{also}"
            " WHERE event_id = ? AND status IN ('done', 'dead')",
            (now, *args, event_id),
        )
        if not cur.rowcount:
            return False
        conn.execute("DELETE FROM dead_letters WHERE event_id = ?", (event_id,))
        return True

    @staticmethod
    def _journal(conn: sqlite3.Connection, operation: Operation) -> None:
        conn.execute(
            "INSERT INTO operations (at, actor, action, event_id, target, detail_json)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                operation.at,
                operation.actor,
                operation.action,
                operation.event_id,
                operation.target,
                dumps(operation.detail),
            ),
        )

    async def record_operation(self, operation: Operation) -> None:
        await self.db.write(lambda conn: self._journal(conn, operation))

    async def add_tallies(self, minute: int, counts: Mapping[str, int]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO tallies (minute, name, count) VALUES (?, ?, ?)"
                " ON CONFLICT (minute, name) DO UPDATE SET count = count + excluded.count",
                [(minute, name, n) for name, n in counts.items()],
            )
            conn.execute("DELETE FROM tallies WHERE minute < ?", (minute - TALLY_RETENTION,))

        await self.db.write(op)

    async def tallies(self, *, since_minute: int) -> dict[str, int]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT name, sum(count) FROM tallies WHERE minute >= ? GROUP BY name",
                (since_minute,),
            ).fetchall()
        )
        return {name: int(total) for name, total in rows}

    async def beat(self, worker: WorkerBeat) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO workers ({WORKER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (
                    worker.name,
                    worker.role,
                    worker.started_at,
                    worker.heartbeat_at,
                    worker.in_flight,
                ),
            )
            conn.execute(
                "DELETE FROM workers WHERE heartbeat_at < ?",
                (worker.heartbeat_at - WORKER_RETENTION,),
            )

        await self.db.write(op)

    async def forget_worker(self, name: str) -> None:
        await self.db.write(
            lambda conn: conn.execute("DELETE FROM workers WHERE name = ?", (name,))
        )

    async def list_workers(self) -> list[WorkerBeat]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {WORKER_COLUMNS} FROM workers ORDER BY heartbeat_at DESC"
            ).fetchall()
        )
        return [worker_from_row(r) for r in rows]

    async def list_rejected(self, *, limit: int) -> list[RejectedView]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT id, reason, raw_json FROM rejected ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        )
        return [rejected_from_row(r[0], r[1], orjson.loads(r[2])) for r in rows]

    async def list_operations(self, *, limit: int, event_id: str | None = None) -> list[Operation]:
        where = " WHERE event_id = :event" if event_id is not None else ""
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {OPERATION_COLUMNS} FROM operations{where} ORDER BY id DESC LIMIT :n",
                {"event": event_id, "n": limit},
            ).fetchall()
        )
        return [operation_from_row(r, orjson.loads) for r in rows]

    async def list_effects(
        self, *, limit: int, status: EffectStatus | None = None
    ) -> list[dict[str, Any]]:
        where = " WHERE status = :status" if status is not None else ""
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {EFFECT_COLUMNS}, event_id FROM effects{where}"
                " ORDER BY updated_at DESC LIMIT :n",
                {"status": status, "n": limit},
            ).fetchall()
        )
        return [effect_from_row(r, orjson.loads) | {"event_id": r[-1]} for r in rows]

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
        where = event_filters(lambda name: f":{name}", filters, symbol=SYMBOL)
        args = {**filters, "limit": limit}
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {SUMMARY_COLUMNS} FROM events{where} ORDER BY received_at DESC LIMIT :limit",
                args,
            ).fetchall()
        )
        return [summary_from_row(r) for r in rows]

    async def count_received(self, *, since: float, cap: int) -> int:
        row = await self.db.read(
            lambda conn: conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE received_at >= ? LIMIT ?)",
                (since, cap),
            ).fetchone()
        )
        return int(row[0])

    async def get_event(self, event_id: str) -> EventDetail | None:
        def op(conn: sqlite3.Connection) -> EventDetail | None:
            row = conn.execute(
                f"SELECT event_json, raw_json, generation, {SUMMARY_COLUMNS} FROM events"
                " WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            if row is None:
                return None
            runs = conn.execute(
                "SELECT record_json FROM runs WHERE event_id = ? ORDER BY run_id", (event_id,)
            ).fetchall()
            effects = conn.execute(
                f"SELECT {EFFECT_COLUMNS} FROM effects WHERE event_id = ? ORDER BY created_at",
                (event_id,),
            ).fetchall()
            dead = conn.execute(
                "SELECT reason FROM dead_letters WHERE event_id = ?", (event_id,)
            ).fetchone()
            operations = conn.execute(
                f"SELECT {OPERATION_COLUMNS} FROM operations WHERE event_id = ? ORDER BY id",
                (event_id,),
            ).fetchall()
            return EventDetail(
                summary=summary_from_row(row[3:]),
                event=Event.from_dict(orjson.loads(row[0])),
                raw=RawDelivery(**orjson.loads(row[1])),
                runs=[RunRecord(**orjson.loads(r[0])) for r in runs],
                effects=[effect_from_row(e, orjson.loads) for e in effects],
                dead_reason=dead[0] if dead else None,
                generation=row[2],
                operations=[operation_from_row(o, orjson.loads) for o in operations],
            )

        return await self.db.read(op)

    async def find_event(self, any_id: str) -> str | None:
        row = await self.db.read(lambda conn: conn.execute(FIND_EVENT, {"id": any_id}).fetchone())
        return None if row is None else str(row[0])

    async def list_dead_letters(
        self, *, limit: int, reason: str | None = None, route: str | None = None
    ) -> list[DeadLetterView]:
        where = [
            *(["instr(d.reason, :reason) > 0"] if reason is not None else []),
            *(["e.route = :route"] if route is not None else []),
        ]
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT d.event_id, d.reason, d.attempts, d.dead_at FROM dead_letters d"
                + (" JOIN events e USING (event_id) WHERE " if where else "")
                + " AND ".join(where)
                + " ORDER BY d.dead_at DESC LIMIT :limit",
                {"reason": reason, "route": route, "limit": limit},
            ).fetchall()
        )
        return [
            DeadLetterView(event_id=r[0], reason=r[1], attempts=r[2], dead_at=r[3]) for r in rows
        ]

    async def stats(self, *, done: bool = True) -> StoreStats:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> StoreStats:
            if done:
                counts = dict(
                    conn.execute("SELECT status, count(*) FROM events GROUP BY status").fetchall()
                )
            else:  # the unfinished through their partial index; the dead from their own table
                counts = dict(
                    conn.execute(
                        "SELECT status, count(*) FROM events"
                        " WHERE status IN ('pending', 'running') GROUP BY status"
                    ).fetchall()
                )
                dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
                counts |= {"dead": dead} if dead else {}
            # Through the partial index of the unfinished: the planner would otherwise walk
            # events_received past every finished event for the minimum.
            oldest = conn.execute(
                "SELECT min(received_at) FROM events INDEXED BY events_unfinished"
                " WHERE status IN ('pending', 'running')"
            ).fetchone()[0]
            rejected = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
            unknown = conn.execute(
                "SELECT count(*) FROM effects WHERE status = 'unknown'"
            ).fetchone()[0]
            lapsed = conn.execute(
                "SELECT count(*) FROM events WHERE status IN ('pending', 'running')"
                " AND status = 'running' AND lease_until <= ?",  # the first term: its index
                (now,),
            ).fetchone()[0]
            duplicates = (
                conn.execute("SELECT coalesce(sum(duplicates), 0) FROM events").fetchone()[0]
                if done
                else 0
            )
            return StoreStats(
                counts=counts,
                oldest_unfinished_at=oldest,
                rejected=rejected,
                unknown_effects=unknown,
                lapsed_leases=lapsed,
                duplicates=duplicates,
            )

        return await self.db.read(op)
