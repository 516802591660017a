"""What the contract suite cannot see of the cloud backends, over the real services: the stream
does not grow, dead letters are kept for inspection, a queue wiped by a Redis restart works on,
and many processes may migrate one database at once."""

from __future__ import annotations

import asyncio
import itertools

import psycopg
import pytest
import redis.asyncio as aioredis

from autorunner.errors import ConfigError, QueueUnavailable
from autorunner.queue.redis import RedisQueue
from autorunner.spacing.redis import RedisSpacer
from autorunner.store.postgres import PostgresStore, migrations
from tests.backends import postgres_schema, redis_queue
from tests.services import free_port


async def test_acknowledged_and_dead_lettered_jobs_leave_the_stream() -> None:
    async with redis_queue() as queue:
        for n in range(100):
            await queue.enqueue(f"e{n}")
        jobs = await queue.claim("c", limit=100, lease=30, wait=0)
        for job in jobs[:99]:
            await queue.ack(job)
        await queue.dead_letter(jobs[99], reason="gave up after 5 attempts")
        stream, _, _, entries, deliveries, _, dlq = queue.keys
        redis = queue._redis
        assert await redis.xlen(stream) == 0
        assert await redis.hlen(entries) == await redis.hlen(deliveries) == 0
        dead = await redis.xrange(dlq)
        assert [(fields["ev"], fields["reason"]) for _, fields in dead] == [  # type: ignore[index,union-attr]
            ("e99", "gave up after 5 attempts")
        ]
        assert (await queue.stats()).dead == 1


async def test_a_queue_wiped_by_a_redis_restart_recreates_its_group_and_works_on() -> None:
    async with redis_queue() as queue:
        await queue.enqueue("before")
        [job] = await queue.claim("c", limit=1, lease=30, wait=0)
        await queue.drop()  # what a restart of a Redis without persistence leaves
        await queue.ack(job)  # a receipt from before the restart is harmlessly stale
        await queue.enqueue("after")
        assert [j.event_id for j in await queue.claim("c", limit=5, lease=30, wait=0)] == ["after"]


async def test_processes_starting_together_apply_the_schema_once() -> None:
    async with postgres_schema() as url:
        stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(6)))
        for store in stores:
            await store.close()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
            versions = [row[0] for row in await cur.fetchall()]
    assert versions == list(range(1, len(migrations()) + 1))


async def test_a_schema_newer_than_the_code_is_refused_with_one_line() -> None:
    async with postgres_schema() as url:
        store = await PostgresStore.open(url)
        await store.close()
        newest = len(migrations())
        with pytest.raises(ConfigError, match=f"schema is at version {newest}, newer than this"):
            await PostgresStore.open(url, scripts=migrations()[:-1])


async def test_telegram_spacing_is_shared_by_every_process_through_redis() -> None:
    async with redis_queue() as queue:
        # Two workers' spacers on one Redis: each slot for the chat comes one interval after
        # the last, whichever of them reserved it.
        workers = [RedisSpacer(queue.client, prefix=f"{{{queue.name}}}:spacing") for _ in "ab"]
        delays = [await workers[n % 2].reserve("chat:42", 0.5) for n in range(4)]
        other_chat = await workers[0].reserve("chat:7", 0.5)
        await queue.client.delete(f"{{{queue.name}}}:spacing:chat:42")
        await queue.client.delete(f"{{{queue.name}}}:spacing:chat:7")
    assert delays[0] == 0
    gaps = [b - a for a, b in itertools.pairwise(delays)]
    assert all(0.4 < gap <= 0.5 for gap in gaps), gaps
    assert other_chat == 0


async def test_enqueue_fails_at_once_for_a_moment_after_redis_went_away() -> None:
    queue = RedisQueue(aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"), name="gone")
    try:
        with pytest.raises(QueueUnavailable, match="Connect"):
            await queue.enqueue("e1")
        with pytest.raises(QueueUnavailable, match="recent connection failure"):
            await queue.enqueue("e2")  # not tried: an ingress answers its webhook at once
    finally:
        await queue.close()
