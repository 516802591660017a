"""The SQLite store (local mode): every invariant is one statement inside the writer's transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from importlib import resources
from typing import Any

import orjson

from autorunner.clock import Clock, system_clock
from autorunner.events import Event
from autorunner.records import (
    EffectIntent,
    EffectState,
    EffectStatus,
    InsertResult,
    Leased,
    Operation,
    Pin,
    RawDelivery,
    RunRecord,
)
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store.rules import BUDGET_WINDOW, aliases, entry_status, proceeds, retaken_status
from autorunner.store.sql import event_row, finish_params
from autorunner.store.sqlite_approvals import AWAITING, SqliteApprovals
from autorunner.store.sqlite_approvals import MIGRATION as APPROVALS_MIGRATION
from autorunner.store.sqlite_operators import SqliteOperators, dumps
from autorunner.store.sqlite_spend import MIGRATION as SPEND_MIGRATION
from autorunner.store.sqlite_spend import SqliteSpend

INSERT_ROWS = 100
"""Rows per multi-row insert (10 parameters each; SQLite allows 32,766 since 3.32)."""


MIGRATION_2 = (
    "CREATE TABLE flags (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)"
)
MIGRATION_3 = "ALTER TABLE effects ADD COLUMN route TEXT;\nCREATE INDEX effects_route ON effects (route, created_at)"
MIGRATION_4 = "ALTER TABLE events ADD COLUMN decision_json TEXT"
MIGRATION_5 = """ALTER TABLE events ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
CREATE TABLE operations (id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, event_id TEXT, target TEXT, detail_json TEXT NOT NULL);
CREATE INDEX operations_event ON operations (event_id, id);
CREATE INDEX effects_unknown ON effects (updated_at) WHERE status = 'unknown';
ALTER TABLE events ADD COLUMN route TEXT;"""
MIGRATION_6 = """ALTER TABLE events ADD COLUMN delivery_id TEXT;
CREATE TABLE aliases (alias TEXT PRIMARY KEY, event_id TEXT NOT NULL)"""
MIGRATION_7 = """ALTER TABLE events ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
CREATE TABLE workers (name TEXT PRIMARY KEY, role TEXT NOT NULL, started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL, in_flight INTEGER NOT NULL)"""
MIGRATION_8 = """CREATE TABLE tallies (minute INTEGER NOT NULL, name TEXT NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY (minute, name)) WITHOUT ROWID"""
MIGRATION_9 = APPROVALS_MIGRATION
MIGRATION_10 = SPEND_MIGRATION


def migrations() -> list[str]:
    """The versioned schema scripts, oldest first (``PRAGMA user_version`` counts them)."""
    text = resources.files("autorunner.store").joinpath("sqlite_schema.sql").read_text()
    return [
        text,
        MIGRATION_2,
        MIGRATION_3,
        MIGRATION_4,
        MIGRATION_5,
        MIGRATION_6,
        MIGRATION_7,
        MIGRATION_8,
        MIGRATION_9,
        MIGRATION_10,
    ]


class SqliteStore(SqliteOperators, SqliteApprovals, SqliteSpend):
    """``Store`` and ``Audit`` over a shared ``SqliteDatabase``.

    ``insert_in``, ``insert_many_in`` and ``finish_in`` run inside a caller's transaction: the
    SQLite outbox writes new events with their queue entries, and a finished run with its
    settled entry, in one.
    """

    def __init__(self, db: SqliteDatabase, *, clock: Clock = system_clock) -> None:
        self.db = db
        self._clock = clock

    async def ping(self) -> None:
        await self.db.write(lambda conn: conn.execute("SELECT 1").fetchone())

    async def insert_event(self, event: Event, raw: RawDelivery) -> InsertResult:
        now = self._clock()
        return await self.db.write(lambda conn: self.insert_in(conn, event, raw, now=now))

    def insert_in(
        self, conn: sqlite3.Connection, event: Event, raw: RawDelivery, *, now: float
    ) -> InsertResult:
        """``insert_event`` inside the caller's transaction."""
        cur = conn.execute(
            "INSERT INTO events (event_id, execution_id, delivery_id, query_id, event_type,"
            " channel, status, received_at, available_at, event_json, raw_json)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            event_row(event, raw, now, dumps),
        )
        if cur.rowcount == 1:
            return InsertResult(inserted=True)
        found = conn.execute(
            "SELECT event_id FROM events WHERE event_id = ? OR execution_id = ?",
            (event.event_id, event.execution_id),
        ).fetchone()
        if found is None:
            return InsertResult(inserted=False)
        conn.execute(
            "UPDATE events SET duplicates = duplicates + 1 WHERE event_id = ?", (found[0],)
        )
        conn.executemany(
            "INSERT OR IGNORE INTO aliases (alias, event_id) VALUES (?, ?)",
            [(alias, found[0]) for alias in aliases(event, found[0])],
        )
        return InsertResult(inserted=False, existing_id=found[0])

    def insert_many_in(
        self, conn: sqlite3.Connection, rows: list[tuple[Event, RawDelivery, float]]
    ) -> list[InsertResult]:
        """``insert_in`` for several events (each with its receipt time) in one statement per
        ``INSERT_ROWS``; what that statement did not insert (a duplicate, also of another row
        here) takes ``insert_in``'s way after it, one by one."""
        firsts: dict[str, int] = {}
        for index, (event, _, _) in enumerate(rows):
            firsts.setdefault(event.event_id, index)
        inserted: set[str] = set()
        chunk = list(firsts.values())
        for start in range(0, len(chunk), INSERT_ROWS):
            part = chunk[start : start + INSERT_ROWS]
            params: list[Any] = []
            for index in part:
                params += event_row(*rows[index], dumps)
            values = ", ".join(["(?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"] * len(part))
            inserted.update(
                row[0]
                for row in conn.execute(
                    "INSERT INTO events (event_id, execution_id, delivery_id, query_id,"
                    " event_type, channel, status, received_at, available_at, event_json,"
                    f" raw_json) VALUES {values} ON CONFLICT DO NOTHING RETURNING event_id",
                    params,
                )
            )
        return [
            InsertResult(inserted=True)
            if event.event_id in inserted and firsts[event.event_id] == index
            else self.insert_in(conn, event, raw, now=now)
            for index, (event, raw, now) in enumerate(rows)
        ]

    async def acquire(self, event_id: str, *, owner: str, lease: float) -> Leased | None:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> Leased | None:
            row = conn.execute(
                "UPDATE events SET status = 'running', attempts = attempts + 1,"
                " lease_owner = ?, lease_until = ?"
                " WHERE event_id = ? AND (status = 'pending' OR (status = 'running' AND lease_until <= ?))"
                " RETURNING attempts, event_json, generation, decision_json, available_at",
                (owner, now + lease, event_id, now),
            ).fetchone()
            if row is None:
                return None
            return Leased(
                event=Event.from_dict(orjson.loads(row[1])),
                attempt=row[0],
                owner=owner,
                lease_until=now + lease,
                generation=row[2],
                pinned=None if row[3] is None else orjson.loads(row[3]),
                available_at=row[4],
            )

        return await self.db.write(op)

    async def extend(self, event_ids: list[str], *, owner: str, lease: float) -> None:
        until = self._clock() + lease
        await self.db.write(
            lambda conn: conn.executemany(
                "UPDATE events SET lease_until = ? WHERE event_id = ? AND lease_owner = ?"
                " AND status = 'running'",
                [(until, event_id, owner) for event_id in event_ids],
            )
        )

    async def release(self, event_id: str, *, owner: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "UPDATE events SET status = 'pending', attempts = max(attempts - 1, 0),"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE event_id = ? AND lease_owner = ? AND status = 'running'",
                (event_id, owner),
            )
        )

    async def pin_decision(
        self, event_id: str, decision: dict[str, Any], *, owner: str, generation: int
    ) -> dict[str, Any] | None:
        pin = Pin(decision=decision, owner=owner, generation=generation)
        return await self.db.write(lambda conn: _pin(conn, event_id, pin))

    async def begin_effect(
        self, intent: EffectIntent, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState:
        now = self._clock()
        return await self.db.write(
            lambda conn: _begin(conn, intent, now, at_least_once=at_least_once, staged=staged)
        )

    async def begin_first_effect(
        self, intent: EffectIntent, pin: Pin, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState | None:
        now = self._clock()

        mine = orjson.loads(dumps(pin.decision))  # compared as stored: JSON turns a date to text

        def op(conn: sqlite3.Connection) -> EffectState | None:
            if _pin(conn, intent.event_id, pin) != mine:
                return None
            return _begin(conn, intent, now, at_least_once=at_least_once, staged=staged)

        return await self.db.write(op)

    async def effect_sending(self, effect_key: str, *, tries: int) -> bool:
        now = self._clock()
        changed = await self.db.write(
            lambda conn: (
                conn.execute(
                    "UPDATE effects SET status = 'pending', updated_at = ?"
                    " WHERE effect_key = ? AND status = 'planned' AND tries = ?",
                    (now, effect_key, tries),
                ).rowcount
            )
        )
        return bool(changed)

    async def finish_effect(
        self, effect_key: str, *, status: EffectStatus, result: dict[str, Any]
    ) -> None:
        now = self._clock()
        await self.db.write(
            lambda conn: conn.execute(
                "UPDATE effects SET status = ?, result_json = ?, updated_at = ? WHERE effect_key = ?",
                (status, dumps(result), now, effect_key),
            )
        )

    async def finish(
        self,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        params = finish_params(
            run, owner=owner, now=self._clock(), retry_at=retry_at, reason=reason
        )
        await self.db.write(lambda conn: self.finish_in(conn, run, params))

    def finish_in(self, conn: sqlite3.Connection, run: RunRecord, params: dict[str, Any]) -> bool:
        """``finish`` inside the caller's transaction (``params`` from ``finish_params``);
        True when the event moved on, False when ``owner`` no longer held it."""
        conn.execute(
            "INSERT INTO runs (event_id, attempt, outcome, finished_at, record_json)"
            " VALUES (?, ?, ?, ?, ?)",
            (run.event_id, run.attempt, run.outcome, run.finished_at, dumps(run)),
        )
        where = " WHERE event_id = :id AND lease_owner = :owner AND status = 'running'"
        clear = (
            "lease_owner = NULL, lease_until = NULL, last_error = :error,"
            " route = coalesce(:route, route)"
        )
        if run.outcome == "done":
            cur = conn.execute(
                f"UPDATE events SET status = 'done', finished_at = :now, {clear}{where}", params
            )
        elif run.outcome == "awaiting":  # not an attempt: it waits for a person
            cur = conn.execute(
                f"UPDATE events SET status = {AWAITING}, available_at = :now,"
                f" attempts = attempts - 1, {clear}{where}",
                params,
            )
        elif run.outcome == "retry":
            cur = conn.execute(
                f"UPDATE events SET status = 'pending', available_at = :retry_at, {clear}{where}",
                params,
            )
        else:
            cur = conn.execute(
                f"UPDATE events SET status = 'dead', finished_at = :now, {clear}{where}", params
            )
            if cur.rowcount:
                conn.execute(
                    "INSERT OR REPLACE INTO dead_letters (event_id, reason, attempts, dead_at)"
                    " VALUES (:id, :error, :attempt, :now)",
                    params,
                )
        return bool(cur.rowcount)

    async def redrive(
        self, event_id: str | None, *, operation: Operation | None = None
    ) -> list[str]:
        now = self._clock()
        only = " AND event_id = ?" if event_id is not None else ""
        args: tuple[Any, ...] = (now, event_id) if event_id is not None else (now,)

        def op(conn: sqlite3.Connection) -> list[str]:
            ids = [
                r[0]
                for r in conn.execute(
                    "UPDATE events SET status = 'pending', attempts = 0, available_at = ?,"
                    f" finished_at = NULL WHERE status = 'dead'{only} RETURNING event_id",
                    args,
                ).fetchall()
            ]
            conn.executemany("DELETE FROM dead_letters WHERE event_id = ?", [(i,) for i in ids])
            if operation is not None:
                for i in ids:
                    self._journal(conn, replace(operation, event_id=i))
            return ids

        return await self.db.write(op)

    async def sweepable(self, *, older_than: float, limit: int) -> list[str]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                "SELECT event_id FROM events WHERE status IN ('pending', 'running')"
                " AND available_at <= :t AND (status = 'pending' OR lease_until <= :t)"
                " ORDER BY available_at LIMIT :n",
                {"t": older_than, "n": limit},
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def set_flag(
        self, name: str, value: str | None, *, operation: Operation | None = None
    ) -> None:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> None:
            if value is None:
                conn.execute("DELETE FROM flags WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT INTO flags (name, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at",
                    (name, value, now),
                )
            if operation is not None:
                self._journal(conn, operation)

        await self.db.write(op)

    async def lead(self, name: str, *, owner: str, ttl: float) -> bool:
        now = self._clock()
        row = await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO flags (name, value, updated_at) VALUES (:n, :o, :until)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at"
                " WHERE flags.value = excluded.value OR flags.updated_at <= :now RETURNING value",
                {"n": f"lead:{name}", "o": owner, "until": now + ttl, "now": now},
            ).fetchone()
        )
        return row is not None

    async def get_flag(self, name: str) -> str | None:
        row = await self.db.read(
            lambda conn: conn.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def record_rejected(self, reason: str, raw: RawDelivery) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO rejected (reason, received_at, raw_json) VALUES (?, ?, ?)",
                (reason, raw.received_at, dumps(raw)),
            )
        )

    async def close(self) -> None:
        await self.db.close()


def _pin(conn: sqlite3.Connection, event_id: str, pin: Pin) -> dict[str, Any] | None:
    """``pin_decision`` on the writer's connection."""
    row = conn.execute(
        "UPDATE events SET decision_json = coalesce(decision_json, ?)"
        " WHERE event_id = ? AND lease_owner = ? AND generation = ?"
        " RETURNING decision_json",
        (dumps(pin.decision), event_id, pin.owner, pin.generation),
    ).fetchone()
    return None if row is None else orjson.loads(row[0])


def _begin(
    conn: sqlite3.Connection,
    intent: EffectIntent,
    now: float,
    *,
    at_least_once: bool,
    staged: bool,
) -> EffectState:
    """``begin_effect`` on the writer's connection."""
    row = conn.execute(
        "SELECT status, result_json, tries FROM effects WHERE effect_key = ?",
        (intent.effect_key,),
    ).fetchone()
    if row is None:
        if intent.budget is not None:
            spent = conn.execute(
                "SELECT count(*) FROM effects WHERE route = ? AND created_at > ?",
                (intent.route, now - BUDGET_WINDOW),
            ).fetchone()[0]
            if spent >= intent.budget:
                return EffectState(proceed=False, status="over_budget")
        conn.execute(
            "INSERT INTO effects (effect_key, event_id, step_id, kind, status, params_json,"
            " created_at, updated_at, route) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                intent.effect_key,
                intent.event_id,
                intent.step_id,
                intent.kind,
                entry_status(staged),
                dumps(intent.params),
                now,
                now,
                intent.route,
            ),
        )
        return EffectState(proceed=True, status=entry_status(staged), tries=1)
    status = row[0]
    retaken = retaken_status(status, at_least_once=at_least_once, staged=staged)
    if retaken is None:
        result = orjson.loads(row[1]) if row[1] else None
        return EffectState(proceed=False, status=status, result=result)
    conn.execute(
        "UPDATE effects SET status = ?, tries = tries + ?, updated_at = ? WHERE effect_key = ?",
        (retaken, int(proceeds(retaken)), now, intent.effect_key),
    )
    tries = row[2] + int(proceeds(retaken))
    return EffectState(proceed=proceeds(retaken), status=retaken, tries=tries)
