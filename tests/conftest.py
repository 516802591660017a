"""Fixtures shared by every layer: backends over a fake clock, memory and real SQLite."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from autorunner.outbox import Outbox, StoreThenQueue
from autorunner.queue.base import Queue
from autorunner.queue.memory import MemoryQueue
from autorunner.queue.sqlite import SqliteQueue
from autorunner.sqlite_outbox import SqliteOutbox
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store import sqlite as sqlite_store
from autorunner.store.base import StoreBackend
from autorunner.store.memory import MemoryStore
from autorunner.store.postgres import PostgresStore
from tests.backends import postgres_schema, redis_queue
from tests.helpers import FakeClock
from tests.services import MotoSqs, PrivateNats

# Property tests judge behaviour, not speed: a loaded CI machine must not turn them red.
settings.register_profile("autorunner", deadline=None)
settings.load_profile("autorunner")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", "postgres-redis"])
async def backends(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[StoreBackend, Queue]]:
    """A store and queue sharing one fake clock, for every backend."""
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
    try:
        yield sqlite_store.SqliteStore(db, clock=clock), SqliteQueue(db, clock=clock)
    finally:
        await db.close()


@pytest.fixture
def outbox(backends: tuple[StoreBackend, Queue], clock: FakeClock) -> Outbox:
    """The outbox each deployment builds over ``backends``: one transaction for both on SQLite
    (local mode), the store then the queue on the others."""
    store, queue = backends
    if isinstance(store, sqlite_store.SqliteStore) and isinstance(queue, SqliteQueue):
        return SqliteOutbox(store, queue, clock=clock)
    return StoreThenQueue(store, queue, clock=clock)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[PrivateNats]:
    """A JetStream server of the tests' own, for the session (queues use fresh names)."""
    server = PrivateNats()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sqs_server() -> Iterator[MotoSqs]:
    """moto's SQS-speaking server for the session, and the environment pointing at it."""
    server = MotoSqs()
    server.start()
    saved = {key: os.environ.get(key) for key in server.environment}
    os.environ.update(server.environment)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.close()
