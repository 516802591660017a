"""Round trips shared by concurrent callers, over the real services: ``StatementBatch`` on
PostgreSQL, and the Redis queue's batched enqueues and settlements. The requests of concurrent
callers travel together, and none changes meaning for it: each caller gets its own row or its
own error, a refused statement fails no neighbour, a lost connection is ``StoreUnavailable`` for
every caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg.types.json import Jsonb

from autorunner.errors import StoreUnavailable
from autorunner.postgres_batch import StatementBatch
from autorunner.postgresdb import PostgresDatabase
from tests.backends import postgres_schema, redis_queue
from tests.helpers import eventually

INSERT = "INSERT INTO items (id, note) VALUES (%s, %s) RETURNING id * 10"


@asynccontextmanager
async def _items(options: str = "") -> AsyncIterator[tuple[str, PostgresDatabase]]:
    """A fresh schema holding an ``items`` table (its URL, with ``options`` added) and a
    database open on it, closed afterwards."""
    async with postgres_schema() as schema_url:
        url = schema_url + options
        db = await PostgresDatabase.open(url)
        try:
            async with db.tx() as conn:
                await conn.execute(
                    "CREATE TABLE items (id integer PRIMARY KEY, note text NOT NULL)"
                )
            yield url, db
        finally:
            await db.close()


async def _stored(db: PostgresDatabase) -> list[tuple[int, str]]:
    async with db.tx() as conn:
        cur = await conn.execute("SELECT id, note FROM items ORDER BY id")
        return [(row[0], row[1]) for row in await cur.fetchall()]


async def test_statements_issued_together_travel_together_and_each_caller_gets_its_row() -> None:
    async with _items() as (_, db):
        batch = StatementBatch(db)
        inserted = await asyncio.gather(*(batch.one(INSERT, (n, f"n{n}")) for n in range(20)))
        assert inserted == [(n * 10,) for n in range(20)]
        assert batch.batches == 1
        updated = await asyncio.gather(
            batch.one("UPDATE items SET note = 'x' WHERE id = %s RETURNING id", (3,)),
            batch.one("UPDATE items SET note = 'y' WHERE id = %s RETURNING id", (99,)),
            batch.one("UPDATE items SET note = 'z' WHERE id = %s", (4,)),
            batch.one(INSERT, (20, "n20")),
        )
        assert list(updated) == [(3,), None, None, (200,)]
        assert batch.batches == 2
        stored = await _stored(db)
        assert len(stored) == 21
        assert stored[3:5] == [(3, "x"), (4, "z")]


INSERT_ONCE = (
    "INSERT INTO items (id, note) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING id * 10"
)
INSERT_MANY = (
    "INSERT INTO items (id, note) SELECT (r->>0)::int, r->>1"
    " FROM jsonb_array_elements(%s::jsonb) AS r ON CONFLICT DO NOTHING RETURNING id::text, id * 10"
)


async def _count_insert_statements(db: PostgresDatabase) -> None:
    async with db.tx() as conn:
        await conn.execute("CREATE TABLE statements (n integer NOT NULL)")
        await conn.execute("INSERT INTO statements VALUES (0)")
        await conn.execute(
            "CREATE FUNCTION counted() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN UPDATE statements SET n = n + 1; RETURN NULL; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER counted AFTER INSERT ON items FOR EACH STATEMENT"
            " EXECUTE FUNCTION counted()"
        )


async def _statements(db: PostgresDatabase) -> int:
    async with db.tx() as conn:
        cur = await conn.execute("SELECT n FROM statements")
        row = await cur.fetchone()
        return int(row[0]) if row else -1


async def test_statements_with_a_form_for_many_rows_run_as_one_and_each_caller_gets_its_row() -> (
    None
):
    async with _items() as (_, db):
        await _count_insert_statements(db)
        batch = StatementBatch(db)
        await batch.one(INSERT_ONCE, (7, "before"))
        assert await _statements(db) == 1
        rows = await asyncio.gather(
            *(batch.one(INSERT_ONCE, (n, f"n{n}"), key=str(n), many=INSERT_MANY) for n in range(10))
        )
        assert list(rows) == [None if n == 7 else (n * 10,) for n in range(10)]  # 7 was there
        assert await _statements(db) == 2  # the ten rows: one statement
        assert batch.batches == 1
        assert (await _stored(db))[7] == (7, "before")


async def test_a_many_row_statement_is_planned_for_each_batch_never_prepared() -> None:
    # Prepared, it would soon run on a plan kept until the next ANALYZE of its tables.
    async with _items() as (url, _):
        db = await PostgresDatabase.open(url, max_size=1)  # every batch on one connection
        try:
            batch = StatementBatch(db)
            for start in range(0, 20, 2):  # ten batches: psycopg prepares at the sixth
                await asyncio.gather(
                    *(
                        batch.one(INSERT_ONCE, (n, f"n{n}"), key=str(n), many=INSERT_MANY)
                        for n in (start, start + 1)
                    )
                )
            assert batch.batches == 10
            stored = await _stored(db)
            async with db.tx() as conn:
                cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
                prepared = [row[0] for row in await cur.fetchall()]
        finally:
            await db.close()
    assert len(stored) == 20
    assert not [s for s in prepared if "jsonb_array_elements" in s], prepared


async def test_a_batch_is_one_transaction_that_waits_on_the_server_once(tmp_path: Path) -> None:
    async with _items() as (url, _):
        db = await PostgresDatabase.open(url, max_size=1)  # one connection: the one traced
        try:
            trace = tmp_path / "protocol.txt"
            with trace.open("w") as out:
                async with db.tx() as conn:
                    conn.pgconn.trace(out.fileno())
                    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                batch = StatementBatch(db)
                rows = await asyncio.gather(
                    *(
                        batch.one(INSERT_ONCE, (n, "n"), key=str(n), many=INSERT_MANY)
                        for n in (1, 2)
                    ),
                    batch.one("SELECT %s::int * 2", (7,)),
                )
                async with db.tx() as conn:
                    conn.pgconn.untrace()
            assert list(rows) == [(10,), (20,), (14,)]
            sent = [line.split("\t") for line in trace.read_text().splitlines() if line[0] == "F"]
            assert [fields[2] for fields in sent].count("Sync") == 1  # one wait for the batch
            parsed = [fields[3] for fields in sent if fields[2] == "Parse"]
            assert '"BEGIN"' in parsed[0]
            assert '"COMMIT"' in parsed[-1]
            assert len(parsed) == 4  # the two inserts as one statement, the select, BEGIN, COMMIT
        finally:
            await db.close()


async def test_a_key_twice_in_a_batch_runs_once_in_the_many_row_statement_then_alone() -> None:
    async with _items() as (_, db):
        await _count_insert_statements(db)
        batch = StatementBatch(db)
        rows = await asyncio.gather(
            batch.one(INSERT_ONCE, (2, "first"), key="2", many=INSERT_MANY),
            batch.one(INSERT_ONCE, (1, "one"), key="1", many=INSERT_MANY),
            batch.one(INSERT_ONCE, (2, "second"), key="2", many=INSERT_MANY),
        )
        # the second caller of key 2 ran after the many-row statement, and found the row there
        assert list(rows) == [(20,), (10,), None]
        assert await _stored(db) == [(1, "one"), (2, "first")]
        assert await _statements(db) == 2


async def test_a_many_row_statement_refused_by_the_server_fails_only_its_callers_row() -> None:
    async with _items() as (_, db):
        batch = StatementBatch(db)
        results = await asyncio.gather(
            *(
                batch.one(
                    INSERT_ONCE, (n, None if n == 3 else f"n{n}"), key=str(n), many=INSERT_MANY
                )
                for n in range(6)
            ),
            return_exceptions=True,
        )
        assert isinstance(results[3], psycopg.errors.NotNullViolation)
        assert [r for n, r in enumerate(results) if n != 3] == [(n * 10,) for n in (0, 1, 2, 4, 5)]
        assert [row[0] for row in await _stored(db)] == [0, 1, 2, 4, 5]
        assert batch.batches == 0  # refused, then each alone


async def test_a_form_for_many_rows_takes_positional_parameters_and_a_key_only() -> None:
    async with _items() as (_, db):
        with pytest.raises(TypeError, match="positional"):
            await StatementBatch(db).one(INSERT_ONCE, {"id": 1}, key="1", many=INSERT_MANY)
        with pytest.raises(TypeError, match="the key"):
            await StatementBatch(db).one(INSERT_ONCE, (1, "one"), many=INSERT_MANY)


async def test_a_refused_statement_fails_only_its_caller_and_its_neighbours_are_committed() -> None:
    async with _items() as (_, db):
        batch = StatementBatch(db)
        await batch.one(INSERT, (1, "first"))
        results = await asyncio.gather(
            batch.one(INSERT, (2, "two")),
            batch.one(INSERT, (1, "again")),  # the primary key is taken
            batch.one(INSERT, (3, "three")),
            return_exceptions=True,
        )
        assert [results[0], results[2]] == [(20,), (30,)]
        assert isinstance(results[1], psycopg.errors.UniqueViolation)
        assert await _stored(db) == [(1, "first"), (2, "two"), (3, "three")]
        # and the connection it ran on serves the next batch
        after = await asyncio.gather(batch.one(INSERT, (4, "4")), batch.one(INSERT, (5, "5")))
        assert list(after) == [(40,), (50,)]


async def test_a_parameter_that_cannot_be_encoded_fails_only_its_caller() -> None:
    async with _items() as (_, db):
        batch = StatementBatch(db)
        results = await asyncio.gather(
            batch.one(INSERT, (1, "one")),
            batch.one(
                "INSERT INTO items (id, note) VALUES (%s, %s::jsonb::text)",
                (2, Jsonb({"n": 2**70})),
            ),  # past 64 bits: orjson refuses it
            batch.one(INSERT, (3, "three")),
            return_exceptions=True,
        )
        assert [results[0], results[2]] == [(10,), (30,)]
        assert isinstance(results[1], TypeError)
        assert await _stored(db) == [(1, "one"), (3, "three")]


async def test_a_row_that_cannot_be_read_after_commit_fails_its_caller_and_runs_nothing_again() -> (
    None
):
    async with _items() as (_, db):
        await _count_insert_statements(db)
        batch = StatementBatch(db)
        results = await asyncio.gather(
            # committed, but psycopg cannot load the date it returns
            batch.one(
                "INSERT INTO items (id, note) VALUES (%s, %s) RETURNING 'infinity'::date",
                (1, "one"),
            ),
            batch.one(INSERT, (2, "two")),
            return_exceptions=True,
        )
        assert isinstance(results[0], psycopg.DataError)
        assert results[1] == (20,)
        assert await _stored(db) == [(1, "one"), (2, "two")]
        assert await _statements(db) == 2  # each insert ran once


async def test_each_caller_gets_its_own_row_when_statement_texts_interleave() -> None:
    async with _items() as (_, db):
        batch = StatementBatch(db)
        double = "SELECT %s::int * 2"
        rows = await asyncio.gather(
            batch.one(INSERT, (1, "a"), key="b"),
            batch.one(double, (7,)),
            batch.one(INSERT, (2, "b"), key="a"),  # runs first among the inserts
            batch.one("SELECT count(*) FROM items", ()),
            batch.one(double, (8,)),
        )
        assert list(rows) == [(10,), (14,), (20,), (2,), (16,)]
        assert batch.batches == 1


async def test_two_batches_writing_the_same_rows_in_opposite_orders_do_not_deadlock() -> None:
    # deadlocks found fast, so that one, if it happens, fails this test quickly
    async with _items("%20-cdeadlock_timeout%3D100") as (url, db):
        other = await PostgresDatabase.open(url)
        try:
            for n in (1, 2):
                await StatementBatch(db).one(INSERT, (n, "new"))
            update = "UPDATE items SET note = %s WHERE id = %s RETURNING id"
            first, second = StatementBatch(db), StatementBatch(other)
            async with await psycopg.AsyncConnection.connect(url) as holder:
                # row 1 held, so both batches are under way before either can finish
                await holder.execute("SELECT 1 FROM items WHERE id = 1 FOR UPDATE")
                both = asyncio.gather(
                    *(first.one(update, ("x", n), key=str(n)) for n in (1, 2)),
                    *(second.one(update, ("y", n), key=str(n)) for n in (2, 1)),
                )
                await eventually(lambda: _waiting_for_locks(holder, 2))
                await holder.rollback()
                assert list(await both) == [(1,), (2,), (2,), (1,)]
            assert (first.batches, second.batches) == (1, 1)  # neither refused and rerun
        finally:
            await other.close()


async def _waiting_for_locks(conn: psycopg.AsyncConnection[Any], count: int) -> bool:
    """Whether ``count`` lock requests wait on the server (its state: no event tells it)."""
    cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
    row = await cur.fetchone()
    return bool(row and row[0] >= count)


async def test_a_lost_connection_is_store_unavailable_for_every_caller_then_service_resumes() -> (
    None
):
    async with _items() as (url, db):
        batch = StatementBatch(db)
        async with db.tx() as conn:  # the pool's one idle connection, killed from outside
            pid = conn.info.backend_pid
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        results = await asyncio.gather(
            *(batch.one(INSERT, (n, "lost")) for n in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results

        async def inserted_after() -> bool:
            try:
                await batch.one(INSERT, (10, "after"))
            except StoreUnavailable:
                return False  # the pool replaces the broken connection in the background
            return True

        await eventually(inserted_after, within=5, interval=0.1)
        assert (10, "after") in await _stored(db)


async def test_settlements_issued_together_are_one_script_call_and_each_takes_effect() -> None:
    async with redis_queue() as queue:
        for n in range(6):
            await queue.enqueue(f"e{n}")
        jobs = await queue.claim("c", limit=6, lease=30, wait=0)
        before = await _script_calls(queue)
        await asyncio.gather(
            *(queue.ack(job) for job in jobs[:3]),
            queue.retry(jobs[3], delay=60),
            queue.dead_letter(jobs[4], reason="no"),
            queue.ack(jobs[5]),
        )
        assert await _script_calls(queue) - before == 1
        stats = await queue.stats()
        assert (stats.ready, stats.in_flight, stats.dead, stats.depth) == (0, 0, 1, 1)
        _, _, delayed, _, _, dead, _ = queue.keys
        assert await queue._redis.zscore(delayed, jobs[3].event_id) is not None
        assert await queue._redis.hget(dead, jobs[4].event_id) == "no"


async def test_a_stale_receipt_among_batched_settlements_settles_nothing_and_the_rest_apply() -> (
    None
):
    async with redis_queue() as queue:
        for n in range(3):
            await queue.enqueue(f"e{n}")
        jobs = await queue.claim("c", limit=3, lease=30, wait=0)
        stale = replace(jobs[1], receipt=jobs[1].receipt.rsplit("|", 1)[0] + "|9")
        await asyncio.gather(queue.ack(jobs[0]), queue.ack(stale), queue.ack(jobs[2]))
        stats = await queue.stats()
        assert (stats.in_flight, stats.depth) == (1, 0)  # e1 is still held by its claim
        await queue.ack(jobs[1])
        assert (await queue.stats()).in_flight == 0


async def _script_calls(queue: object) -> int:
    info = await queue._redis.info("commandstats")  # type: ignore[attr-defined]
    return sum(int(info.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def test_enqueues_issued_together_are_one_script_call_and_keep_one_job_per_event() -> None:
    async with redis_queue() as queue:
        before = await _script_calls(queue)
        await asyncio.gather(
            queue.enqueue("a"),
            queue.enqueue("b"),
            queue.enqueue("a"),  # the same event again: still one job
            queue.enqueue("later", delay=60),
        )
        assert await _script_calls(queue) - before == 1
        stats = await queue.stats()
        assert (stats.ready, stats.depth) == (2, 3)
        jobs = await queue.claim("c", limit=10, lease=30, wait=0)
        assert sorted(job.event_id for job in jobs) == ["a", "b"]
