"""The PostgreSQL store (cloud mode): ``Store`` and ``Audit`` over a psycopg 3 connection pool.

Every invariant is one atomic statement or one transaction: insert-if-new on ``event_id`` and
``execution_id`` by unique constraints (``ON CONFLICT DO NOTHING``), leases by a conditional
``UPDATE … RETURNING`` (the row lock makes two claimers of one event impossible), a route's
hourly budget counted under a transaction-scoped advisory lock on the route. The connection
pool, the versioned migrations and what a connection failure means are ``postgresdb``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from typing import Any

from psycopg.types.json import Jsonb

from autorunner.clock import Clock, system_clock
from autorunner.events import Event
from autorunner.postgres_batch import StatementBatch
from autorunner.postgresdb import Conn, PostgresDatabase
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
from autorunner.store.postgres_approvals import AWAITING, PostgresApprovals
from autorunner.store.postgres_approvals import MIGRATION as APPROVALS_MIGRATION
from autorunner.store.postgres_operators import PostgresOperators
from autorunner.store.postgres_spend import MIGRATION as SPEND_MIGRATION
from autorunner.store.postgres_spend import PostgresSpend
from autorunner.store.postgres_statements import (
    ACQUIRE_MANY,
    FINISH_DONE,
    FINISH_DONE_MANY,
    FINISH_EFFECT_MANY,
    INSERT_EFFECT,
    INSERT_EFFECT_MANY,
    INSERT_EVENT_MANY,
    PIN_AND_INSERT_EFFECT,
    PIN_AND_INSERT_EFFECT_MANY,
    PIN_DECISION,
    PIN_DECISION_MANY,
    PIN_DECISION_OURS,
)
from autorunner.store.rules import BUDGET_WINDOW, entry_status, proceeds, retaken_status
from autorunner.store.sql import event_row, finish_params

MIGRATION_2 = """ALTER TABLE events ADD COLUMN generation integer NOT NULL DEFAULT 1;
CREATE TABLE operations (id bigserial PRIMARY KEY, at double precision NOT NULL,
    actor text NOT NULL, action text NOT NULL, event_id text, target text,
    detail_json jsonb NOT NULL);
CREATE INDEX operations_event ON operations (event_id, id);
CREATE INDEX effects_unknown ON effects (updated_at) WHERE status = 'unknown';
ALTER TABLE events ADD COLUMN route text;
"""
MIGRATION_3 = """ALTER TABLE events ADD COLUMN delivery_id text;
CREATE TABLE aliases (alias text PRIMARY KEY, event_id text NOT NULL);
"""
MIGRATION_4 = """ALTER TABLE events ADD COLUMN duplicates integer NOT NULL DEFAULT 0;
CREATE TABLE workers (name text PRIMARY KEY, role text NOT NULL,
    started_at double precision NOT NULL, heartbeat_at double precision NOT NULL,
    in_flight integer NOT NULL);
"""
MIGRATION_5 = """CREATE TABLE sqs_jobs (queue text NOT NULL, event_id text NOT NULL,
    state text NOT NULL, sent_at double precision NOT NULL, message_id text, receipt text,
    reason text, PRIMARY KEY (queue, event_id));
"""
# sqs_jobs: which SQS delivery of a job is current, kept by ``queue.sqs`` (SQS cannot say).
MIGRATION_6 = """CREATE TABLE tallies (minute integer NOT NULL, name text NOT NULL,
    count bigint NOT NULL, PRIMARY KEY (minute, name));
"""
MIGRATION_7 = APPROVALS_MIGRATION
MIGRATION_8 = SPEND_MIGRATION
# The unfinished events' index named the column every lease and run record changes (status) in
# its predicate, which the hot statements' own conditions imply: under statistics older than a
# burst (a backlog the planner has not counted yet) it chose to scan every unfinished event per
# batch. Indexed by what only a finished event has, no hot statement can use it; the queries
# that want it say ``finished_at IS NULL``, which every pending and running event has.
MIGRATION_9 = """UPDATE events SET finished_at = NULL
    WHERE status IN ('pending', 'running') AND finished_at IS NOT NULL;
DROP INDEX events_unfinished;
CREATE INDEX events_unfinished ON events (available_at) WHERE finished_at IS NULL;
"""


def migrations() -> list[str]:
    """The versioned schema scripts, oldest first."""
    text = resources.files("autorunner.store").joinpath("postgres_schema.sql").read_text()
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
    ]


class PostgresStore(PostgresOperators, PostgresApprovals, PostgresSpend):
    """``Store`` and ``Audit`` on PostgreSQL; build it with ``await PostgresStore.open(url)``."""

    def __init__(self, db: PostgresDatabase, *, clock: Clock = system_clock) -> None:
        self.db = db
        self._tx = db.tx
        self._batch = StatementBatch(db)
        self._clock = clock

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock = system_clock,
        connect_timeout: float = 5.0,
        scripts: Sequence[str] | None = None,
        migrate: bool = True,
    ) -> PostgresStore:
        """Connect, apply missing migrations and return the store; ``StoreUnavailable`` if the
        server cannot be reached within ``connect_timeout`` seconds. With ``migrate=False`` (the
        inspection commands) nothing is created: a schema missing or older than this code is a
        ``ConfigError`` saying so."""
        db = await PostgresDatabase.open(url, connect_timeout=connect_timeout)
        wanted = migrations() if scripts is None else scripts
        try:
            if migrate:
                await db.migrate(wanted)
            else:
                await db.require(len(wanted))
        except BaseException:
            await db.close()
            raise
        return cls(db, clock=clock)

    async def ping(self) -> None:
        async with self._tx() as conn:
            await conn.execute("SELECT 1")

    async def insert_event(self, event: Event, raw: RawDelivery) -> InsertResult:
        now = self._clock()
        inserted = await self._batch.one(
            "INSERT INTO events (event_id, execution_id, delivery_id, query_id, event_type,"
            " channel, status, received_at, available_at, event_json, raw_json)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            event_row(event, raw, now, Jsonb),
            key=event.event_id,
            many=INSERT_EVENT_MANY,
        )
        if inserted is not None:
            return InsertResult(inserted=True)
        async with self._tx() as conn:
            # One statement: find the stored event and keep the ids this duplicate carried.
            cur = await conn.execute(
                "WITH found AS (SELECT event_id FROM events WHERE event_id = %(id)s"
                " OR execution_id = %(execution)s LIMIT 1),"
                " kept AS (INSERT INTO aliases (alias, event_id) SELECT a, found.event_id"
                " FROM found, unnest(%(aliases)s::text[]) AS a WHERE a <> found.event_id"
                " ON CONFLICT DO NOTHING),"
                " counted AS (UPDATE events SET duplicates = duplicates + 1"
                " WHERE event_id = (SELECT event_id FROM found)) SELECT event_id FROM found",
                {
                    "id": event.event_id,
                    "execution": event.execution_id,
                    "aliases": [i for i in (event.event_id, event.delivery_id) if i],
                },
            )
            found = await cur.fetchone()
            return InsertResult(inserted=False, existing_id=found[0] if found else None)

    async def acquire(self, event_id: str, *, owner: str, lease: float) -> Leased | None:
        now = self._clock()
        row = await self._batch.one(
            "UPDATE events SET status = 'running', attempts = attempts + 1,"
            " lease_owner = %s, lease_until = %s WHERE event_id = %s"
            " AND (status = 'pending' OR (status = 'running' AND lease_until <= %s))"
            " RETURNING attempts, event_json, generation, decision_json, available_at",
            (owner, now + lease, event_id, now),
            key=event_id,
            many=ACQUIRE_MANY,
        )
        if row is None:
            return None
        return Leased(
            event=Event.from_dict(row[1]),
            attempt=row[0],
            owner=owner,
            lease_until=now + lease,
            generation=row[2],
            pinned=row[3],
            available_at=row[4],
        )

    async def extend(self, event_ids: list[str], *, owner: str, lease: float) -> None:
        until = self._clock() + lease
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE events SET lease_until = %s WHERE event_id = ANY(%s)"
                " AND lease_owner = %s AND status = 'running'",
                (until, event_ids, owner),
            )

    async def release(self, event_id: str, *, owner: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE events SET status = 'pending', attempts = greatest(attempts - 1, 0),"
                " lease_owner = NULL, lease_until = NULL"
                " WHERE event_id = %s AND lease_owner = %s AND status = 'running'",
                (event_id, owner),
            )

    async def pin_decision(
        self, event_id: str, decision: dict[str, Any], *, owner: str, generation: int
    ) -> dict[str, Any] | None:
        row = await self._batch.one(
            PIN_DECISION,
            (Jsonb(decision), event_id, owner, generation),
            key=event_id,
            many=PIN_DECISION_MANY,
        )
        return None if row is None else dict(row[0])

    async def begin_effect(
        self, intent: EffectIntent, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState:
        now, status = self._clock(), entry_status(staged)
        values = _intent_values(intent, status, now)
        # The usual case, a new key with no budget to count: one statement.
        if intent.budget is None and await self._batch.one(
            INSERT_EFFECT, values, key=intent.effect_key, many=INSERT_EFFECT_MANY
        ):
            return EffectState(proceed=True, status=status, tries=1)
        async with self._tx(atomic=True) as conn:
            return await _begin_locked(
                conn, intent, values, now=now, at_least_once=at_least_once, staged=staged
            )

    async def begin_first_effect(
        self, intent: EffectIntent, pin: Pin, *, at_least_once: bool = False, staged: bool = False
    ) -> EffectState | None:
        now, status = self._clock(), entry_status(staged)
        values = _intent_values(intent, status, now)
        to_pin: Pin | None = pin  # pinned in the transaction below, unless pinned already
        if intent.budget is None:
            # The usual case, a new key with no budget to count: one statement.
            row = await self._batch.one(
                PIN_AND_INSERT_EFFECT,
                (Jsonb(pin.decision), intent.event_id, pin.owner, pin.generation, *values),
                key=intent.event_id,
                many=PIN_AND_INSERT_EFFECT_MANY,
            )
            if row is None or not row[0]:  # the owner lost the event, or another decision is kept
                return None
            if row[1]:
                return EffectState(proceed=True, status=status, tries=1)
            # Pinned, but the key was there already (an attempt of this generation began it):
            # decided under its row lock, as ``begin_effect`` does.
            to_pin = None
        async with self._tx(atomic=True) as conn:
            if to_pin is not None:
                decision = Jsonb(to_pin.decision)
                cur = await conn.execute(
                    PIN_DECISION_OURS,
                    (decision, intent.event_id, to_pin.owner, to_pin.generation, decision),
                )
                ours = await cur.fetchone()
                if ours is None or not ours[0]:
                    return None
            return await _begin_locked(
                conn, intent, values, now=now, at_least_once=at_least_once, staged=staged
            )

    async def effect_sending(self, effect_key: str, *, tries: int) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute(
                "UPDATE effects SET status = 'pending', updated_at = %s"
                " WHERE effect_key = %s AND status = 'planned' AND tries = %s",
                (self._clock(), effect_key, tries),
            )
        return cur.rowcount == 1

    async def finish_effect(
        self, effect_key: str, *, status: EffectStatus, result: dict[str, Any]
    ) -> None:
        now = self._clock()
        await self._batch.one(
            "UPDATE effects SET status = %s, result_json = %s, updated_at = %s"
            " WHERE effect_key = %s",
            (status, Jsonb(result), now, effect_key),
            key=effect_key,
            many=FINISH_EFFECT_MANY,
        )

    async def finish(
        self,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        now = self._clock()
        named = finish_params(run, owner=owner, now=now, retry_at=retry_at, reason=reason)
        if run.outcome == "done":
            values = (
                now,
                named["error"],
                run.route,
                run.event_id,
                owner,
                run.event_id,
                run.attempt,
                run.finished_at,
                Jsonb(run),
            )
            await self._batch.one(FINISH_DONE, values, key=run.event_id, many=FINISH_DONE_MANY)
            return
        params = {
            **named,
            "record": Jsonb(run),
            "outcome": run.outcome,
            "finished_at": run.finished_at,
        }
        status, at = {
            "retry": ("'pending'", "available_at = %(retry_at)s"),
            "dead": ("'dead'", "finished_at = %(now)s"),
            # not an attempt: it waits for a person
            "awaiting": (AWAITING, "available_at = %(now)s, attempts = attempts - 1"),
        }[run.outcome]
        # One statement (data-modifying CTEs run as one atomic unit): the run is appended
        # whoever finishes, the event moves only for the lease's owner, a dead one is filed.
        # (A done one: FINISH_DONE above, the same with a form for many rows.)
        dead = (
            ", dead AS (INSERT INTO dead_letters (event_id, reason, attempts, dead_at)"
            " SELECT event_id, %(error)s, %(attempt)s, %(now)s FROM moved"
            " ON CONFLICT (event_id) DO UPDATE SET reason = excluded.reason,"
            " attempts = excluded.attempts, dead_at = excluded.dead_at)"
            if run.outcome == "dead"
            else ""
        )
        query = (
            f"WITH moved AS (UPDATE events SET status = {status}, {at}, lease_owner = NULL,"
            " lease_until = NULL, last_error = %(error)s, route = coalesce(%(route)s, route)"
            " WHERE event_id = %(id)s"
            " AND lease_owner = %(owner)s AND status = 'running' RETURNING event_id),"
            " run AS (INSERT INTO runs (event_id, attempt, outcome, finished_at, record_json)"
            " VALUES (%(id)s, %(attempt)s, %(outcome)s, %(finished_at)s, %(record)s))"
            f"{dead} SELECT count(*) FROM moved"
        )
        await self._batch.one(query, params, key=run.event_id)

    async def redrive(
        self, event_id: str | None, *, operation: Operation | None = None
    ) -> list[str]:
        now = self._clock()
        only = " AND event_id = %(id)s" if event_id is not None else ""
        async with self._tx(atomic=True) as conn:
            cur = await conn.execute(
                (
                    "UPDATE events SET status = 'pending', attempts = 0, available_at = %(now)s,"
                    f" finished_at = NULL WHERE status = 'dead'{only} RETURNING event_id"
                ).encode(),
                {"now": now, "id": event_id},
            )
            ids = [r[0] for r in await cur.fetchall()]
            await conn.execute("DELETE FROM dead_letters WHERE event_id = ANY(%s)", (ids,))
            if operation is not None:
                await self._journal_each(conn, [replace(operation, event_id=i) for i in ids])
        return ids

    async def sweepable(self, *, older_than: float, limit: int) -> list[str]:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT event_id FROM events WHERE finished_at IS NULL"
                " AND status IN ('pending', 'running') AND available_at <= %(t)s"
                " AND (status = 'pending' OR lease_until <= %(t)s)"
                " ORDER BY available_at LIMIT %(n)s",
                {"t": older_than, "n": limit},
            )
            return [r[0] for r in await cur.fetchall()]

    async def record_rejected(self, reason: str, raw: RawDelivery) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO rejected (reason, received_at, raw_json) VALUES (%s, %s, %s)",
                (reason.replace("\x00", "\ufffd"), raw.received_at, Jsonb(raw)),
            )

    async def set_flag(
        self, name: str, value: str | None, *, operation: Operation | None = None
    ) -> None:
        async with self._tx(atomic=operation is not None) as conn:
            if value is None:
                await conn.execute("DELETE FROM flags WHERE name = %s", (name,))
            else:
                await conn.execute(
                    "INSERT INTO flags (name, value, updated_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at",
                    (name, value, self._clock()),
                )
            if operation is not None:
                await self._journal(conn, operation)

    async def lead(self, name: str, *, owner: str, ttl: float) -> bool:
        now = self._clock()
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO flags (name, value, updated_at) VALUES (%(n)s, %(o)s, %(until)s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at"
                " WHERE flags.value = excluded.value OR flags.updated_at <= %(now)s"
                " RETURNING value",
                {"n": f"lead:{name}", "o": owner, "until": now + ttl, "now": now},
            )
            row = await cur.fetchone()
        return row is not None

    async def get_flag(self, name: str) -> str | None:
        async with self._tx() as conn:
            cur = await conn.execute("SELECT value FROM flags WHERE name = %s", (name,))
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def close(self) -> None:
        await self.db.close()


def _intent_values(intent: EffectIntent, status: str, now: float) -> tuple[Any, ...]:
    """``INSERT_EFFECT``'s parameters."""
    return (
        intent.effect_key,
        intent.event_id,
        intent.step_id,
        intent.kind,
        status,
        Jsonb(intent.params),
        now,  # created_at
        now,  # updated_at
        intent.route,
    )


async def _begin_locked(
    conn: Conn,
    intent: EffectIntent,
    values: tuple[Any, ...],
    *,
    now: float,
    at_least_once: bool,
    staged: bool,
) -> EffectState:
    """A key seen before, or a route with a budget: decided in ``conn``'s transaction under a
    row or route lock."""
    if intent.budget is not None:
        # Counting then inserting must not interleave with another worker's: serialize
        # the route's new effects for the length of this transaction.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"budget:{intent.route}",)
        )
    cur = await conn.execute(
        "SELECT status, result_json, tries FROM effects WHERE effect_key = %s FOR UPDATE",
        (intent.effect_key,),
    )
    found = await cur.fetchone()
    if found is None:
        if intent.budget is not None:
            cur = await conn.execute(
                "SELECT count(*) FROM effects WHERE route = %s AND created_at > %s",
                (intent.route, now - BUDGET_WINDOW),
            )
            spent = await cur.fetchone()
            if spent is not None and spent[0] >= intent.budget:
                return EffectState(proceed=False, status="over_budget")
        cur = await conn.execute(INSERT_EFFECT, values)
        if cur.rowcount == 1:
            return EffectState(proceed=True, status=entry_status(staged), tries=1)
        # Another transaction inserted the key meanwhile: this one must not run it.
        return EffectState(proceed=False, status="pending")
    status = found[0]
    retaken = retaken_status(status, at_least_once=at_least_once, staged=staged)
    if retaken is None:
        return EffectState(proceed=False, status=status, result=found[1])
    await conn.execute(
        "UPDATE effects SET status = %s, tries = tries + %s, updated_at = %s WHERE effect_key = %s",
        (retaken, int(proceeds(retaken)), now, intent.effect_key),
    )
    tries = int(found[2]) + int(proceeds(retaken))
    return EffectState(proceed=proceeds(retaken), status=retaken, tries=tries)
