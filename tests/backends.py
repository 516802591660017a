"""The shared PostgreSQL and Redis services, isolated per test: a fresh schema, a fresh queue
name; and queues on the private JetStream and SQS-speaking servers, under fresh names. Override the addresses with ``TEST_DATABASE_URL`` and ``TEST_REDIS_URL``."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

import psycopg
from aiobotocore.session import get_session

from autorunner.clock import Clock, system_clock
from autorunner.queue.nats import NatsQueue
from autorunner.queue.redis import RedisQueue
from autorunner.queue.sqs import SqsQueue
from autorunner.store.postgres import PostgresStore
from tests.services import MotoSqs, PrivateNats, need

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A connection URL (usable as ``DATABASE_URL``) whose ``search_path`` is a fresh schema,
    dropped afterwards; skips the test when PostgreSQL is not here (``services.need``)."""
    need("postgres")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}".encode())
        try:
            yield f"{DATABASE_URL}?options=-csearch_path%3D{schema}"
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


@asynccontextmanager
async def redis_queue(clock: Clock = system_clock) -> AsyncIterator[RedisQueue]:
    """A queue under a fresh name on the shared Redis, its keys deleted afterwards; skips the
    test when Redis is not here (``services.need``)."""
    need("redis")
    async with _dropped(
        await RedisQueue.open(REDIS_URL, name=f"t-{uuid.uuid4().hex[:12]}", clock=clock)
    ) as queue:
        yield queue


@asynccontextmanager
async def nats_queue(server: PrivateNats, *, lease: float) -> AsyncIterator[NatsQueue]:
    """A queue under a fresh name on a private JetStream server, its streams deleted after."""
    async with _dropped(
        await NatsQueue.open(server.url, lease=lease, name=f"t{uuid.uuid4().hex[:12]}")
    ) as queue:
        yield queue


@asynccontextmanager
async def sqs_queue(
    moto: MotoSqs, database_url: str, *, fifo: bool = False, clock: Clock = system_clock
) -> AsyncIterator[SqsQueue]:
    """A fresh SQS queue on moto's server, its registry in the PostgreSQL at ``database_url``
    (migrated here). The process environment must hold ``moto.environment``."""
    name = f"t{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    async with get_session().create_client(
        "sqs", endpoint_url=moto.endpoint, region_name=moto.REGION
    ) as client:
        answer = await client.create_queue(QueueName=name, Attributes=attributes)
    store = await PostgresStore.open(database_url)
    try:
        queue = await SqsQueue.open(
            str(answer["QueueUrl"]), db=store.db, region=moto.REGION, clock=clock
        )
        async with _dropped(queue):
            yield queue
    finally:
        await store.close()


class _Droppable(Protocol):
    async def drop(self) -> None: ...
    async def close(self) -> None: ...


Q = TypeVar("Q", bound=_Droppable)


@asynccontextmanager
async def _dropped(queue: Q) -> AsyncIterator[Q]:
    """``queue``, its keys or streams deleted and its connection closed afterwards."""
    try:
        yield queue
    finally:
        await queue.drop()
        await queue.close()
