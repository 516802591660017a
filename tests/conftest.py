"""Fixtures shared by every layer: backends over a fake clock, memory and real SQLite."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from psycopg.conninfo import make_conninfo

from autorunner.queue.base import Queue
from autorunner.queue.memory import MemoryQueue
from autorunner.queue.redis import RedisQueue
from autorunner.queue.sqlite import SqliteQueue
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store import sqlite as sqlite_store
from autorunner.store.base import Backend
from autorunner.store.memory import MemoryStore
from autorunner.store.postgres import PostgresStore
from tests.helpers import FakeClock

# Property tests judge behaviour, not speed: a loaded CI machine must not turn them red.
settings.register_profile("autorunner", deadline=None)
settings.load_profile("autorunner")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A connection URL whose ``search_path`` is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}".encode())
        try:
            yield make_conninfo(DATABASE_URL, options=f"-csearch_path={schema}")
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


@asynccontextmanager
async def redis_queue(clock: FakeClock) -> AsyncIterator[RedisQueue]:
    """A queue under a fresh name on the shared Redis, its keys deleted afterwards."""
    queue = await RedisQueue.open(REDIS_URL, name=f"t-{uuid.uuid4().hex[:12]}", clock=clock)
    try:
        yield queue
    finally:
        await queue.drop()
        await queue.close()


@pytest.fixture(params=["memory", "sqlite", "sqlite-outbox", "postgres-redis"])
async def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[Backend, Queue]]:
    """A store and queue sharing one fake clock, for every backend.

    ``sqlite-outbox`` is how local mode runs: the store writes and settles the queue's entries
    inside its own transactions.
    """
    if request.param == "memory":
        yield MemoryStore(clock=clock), MemoryQueue(clock=clock)
        return
    if request.param == "postgres-redis":
        async with postgres_schema() as url, redis_queue(clock) as queue:
            store = await PostgresStore.open(url, clock=clock)
            try:
                yield store, queue
            finally:
                await store.close()
        return
    db = SqliteDatabase(str(tmp_path / "contract.db"), migrations=sqlite_store.migrations())
    await db.open()
    local = SqliteQueue(db, clock=clock)
    outbox = local if request.param == "sqlite-outbox" else None
    try:
        yield sqlite_store.SqliteStore(db, clock=clock, outbox=outbox), local
    finally:
        await db.close()
