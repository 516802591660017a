"""Round trips shared by concurrent callers, over the real services: ``StatementBatch`` on
PostgreSQL, and the Redis queue's batched enqueues and settlements. The requests of concurrent
callers travel together, and none changes meaning for it: each caller gets its own row or its
own error, a refused statement fails no neighbour, a lost connection is ``StoreUnavailable`` for
every caller."""

from __future__ import annotations

import asyncio

import psycopg

from autorunner.errors import StoreUnavailable
from autorunner.postgres_batch import StatementBatch
from autorunner.postgresdb import PostgresDatabase
from tests.backends import postgres_schema, redis_queue

INSERT = "INSERT INTO items (id, note) VALUES (%s, %s) RETURNING id * 10"


async def _items(url: str) -> PostgresDatabase:
    db = await PostgresDatabase.open(url)
    async with db.tx() as conn:
        await conn.execute("CREATE TABLE items (id integer PRIMARY KEY, note text NOT NULL)")
    return db


async def _stored(db: PostgresDatabase) -> list[tuple[int, str]]:
    async with db.tx() as conn:
        cur = await conn.execute("SELECT id, note FROM items ORDER BY id")
        return [(row[0], row[1]) for row in await cur.fetchall()]


async def test_statements_issued_together_travel_together_and_each_caller_gets_its_row() -> None:
    async with postgres_schema() as url:
        db = await _items(url)
        try:
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
        finally:
            await db.close()


async def test_a_refused_statement_fails_only_its_caller_and_its_neighbours_are_committed() -> None:
    async with postgres_schema() as url:
        db = await _items(url)
        try:
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
            assert await asyncio.gather(batch.one(INSERT, (4, "4")), batch.one(INSERT, (5, "5")))
        finally:
            await db.close()


async def test_a_lost_connection_is_store_unavailable_for_every_caller_then_service_resumes() -> (
    None
):
    async with postgres_schema() as url:
        db = await _items(url)
        try:
            batch = StatementBatch(db)
            async with db.tx() as conn:  # the pool's one idle connection, killed from outside
                pid = conn.info.backend_pid
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            results = await asyncio.gather(
                *(batch.one(INSERT, (n, "lost")) for n in range(3)), return_exceptions=True
            )
            assert all(isinstance(r, StoreUnavailable) for r in results), results
            for _ in range(50):  # the pool replaces the broken connection in the background
                try:
                    await batch.one(INSERT, (10, "after"))
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.1)
            assert (10, "after") in await _stored(db)
        finally:
            await db.close()


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
