"""Opening the configured store and queue: one SQLite file for both in local mode; PostgreSQL
and Redis Streams, NATS JetStream or SQS in cloud mode, waited for at start when they come
late."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from autorunner.clock import Clock, system_clock
from autorunner.config import Settings, queue_kind, sqlite_path
from autorunner.errors import ConfigError, Unavailable
from autorunner.outbox import Outbox, StoreThenQueue
from autorunner.queue.base import Queue
from autorunner.queue.memory import MemoryQueue
from autorunner.queue.sqlite import SqliteQueue
from autorunner.sqlite_outbox import SqliteOutbox
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store import sqlite as sqlite_store
from autorunner.store.base import StoreBackend
from autorunner.store.memory import MemoryStore

if TYPE_CHECKING:
    from autorunner.store.postgres import PostgresStore

log = structlog.get_logger("autorunner.backends")


@dataclass(kw_only=True)
class Backends:
    """The store and queue a process works with, and the outbox between them."""

    store: StoreBackend
    queue: Queue
    outbox: Outbox

    async def close(self) -> None:
        await self.queue.close()
        await self.store.close()


async def open_backends(
    settings: Settings, *, clock: Clock = system_clock, create: bool = True
) -> Backends:
    """Open the configured store and queue (one SQLite file serves both in local mode).

    With ``create=False`` (the CLI's inspection commands) a missing database file is a
    ``ConfigError`` rather than a new empty database in the wrong folder.
    """
    if settings.runner_mode == "cloud":
        return await open_cloud_backends(settings, clock=clock, migrate=create)
    if settings.store_url.startswith("memory://"):
        if not create:
            raise ConfigError(
                "QUEUE_URL=memory:// keeps nothing between processes: inspect the sqlite:// file"
                " `autorunner serve` uses instead"
            )
        twin, twin_queue = MemoryStore(clock=clock), MemoryQueue(clock=clock)
        return Backends(
            store=twin, queue=twin_queue, outbox=StoreThenQueue(twin, twin_queue, clock=clock)
        )
    path = sqlite_path(settings.store_url)
    if not create and not await asyncio.to_thread(os.path.exists, path):
        raise ConfigError(
            f"no database at {path}: run this where `autorunner serve` runs, or set QUEUE_URL"
        )
    db = SqliteDatabase(
        path,
        migrations=sqlite_store.migrations(),
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        migrate=create,
    )
    await db.open()
    queue = SqliteQueue(db, clock=clock)
    store = sqlite_store.SqliteStore(db, clock=clock)
    return Backends(store=store, queue=queue, outbox=SqliteOutbox(store, queue, clock=clock))


async def open_backends_patiently(settings: Settings, *, clock: Clock = system_clock) -> Backends:
    """``open_backends``; in cloud mode waiting up to ``STARTUP_WAIT`` seconds for a store or
    queue that is not up yet (one warning line per try), so processes may start before their
    services do. A local SQLite file that cannot be opened fails at once."""
    if settings.runner_mode != "cloud":
        return await open_backends(settings, clock=clock)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.startup_wait
    delay = 0.25
    while True:
        try:
            return await open_backends(settings, clock=clock)
        except Unavailable as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("startup.waiting", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_cloud_backends(
    settings: Settings, *, clock: Clock = system_clock, migrate: bool = True
) -> Backends:
    """PostgreSQL (store, migrated at start unless ``migrate`` is False: the inspection
    commands change nothing) and the queue: Redis Streams, NATS JetStream or SQS; one clear
    line when a service cannot be reached at start. Once open, both ride out outages."""
    from autorunner.store.postgres import PostgresStore  # noqa: PLC0415 - cloud mode only

    assert settings.database_url is not None  # noqa: S101 - Settings checks it in cloud mode
    store = await PostgresStore.open(
        settings.database_url,
        clock=clock,
        connect_timeout=settings.store_timeout,
        migrate=migrate,
    )
    try:
        queue = await open_cloud_queue(settings, store, clock=clock)
    except BaseException:
        await store.close()
        raise
    return Backends(store=store, queue=queue, outbox=StoreThenQueue(store, queue, clock=clock))


async def open_cloud_queue(settings: Settings, store: PostgresStore, *, clock: Clock) -> Queue:
    """The queue ``QUEUE_URL`` names (each backend's client is imported only when used)."""
    kind = queue_kind(settings.queue_url)
    if kind == "nats":
        from autorunner.queue.nats import NatsQueue  # noqa: PLC0415

        return await NatsQueue.open(
            settings.queue_url,
            lease=settings.lease_seconds,
            name=settings.queue_name,
            clock=clock,
            connect_timeout=settings.store_timeout,
        )
    if kind == "sqs":
        from autorunner.queue.sqs import SqsQueue  # noqa: PLC0415

        return await SqsQueue.open(
            settings.queue_url,
            db=store.db,
            region=settings.aws_region,
            clock=clock,
            connect_timeout=settings.store_timeout,
        )
    from autorunner.queue.redis import RedisQueue  # noqa: PLC0415

    return await RedisQueue.open(
        settings.queue_url,
        name=settings.queue_name,
        clock=clock,
        connect_timeout=settings.store_timeout,
    )
