"""Cloud mode at scale, against real Redis and PostgreSQL servers of its own: two ingress and
four worker processes take 20,000 deliveries (20% duplicates) while one worker is SIGKILLed
and restarted every second and Redis is killed (losing everything it held) and restarted."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.cloud.harness import Sent, Stack, cloud_stack, deliver, fake_api
from tests.helpers import eventually

UNIQUE = 16_000
DUPLICATES = 4_000


async def keep_killing_workers(stack: Stack, stop: asyncio.Event) -> int:
    """Every second SIGKILL one running worker and start a new one; returns how many died."""
    killed = 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        alive = [w for w in stack.workers if w.process.poll() is None]
        if alive:
            await asyncio.to_thread(alive[killed % len(alive)].kill)
            killed += 1
        await asyncio.to_thread(stack.start, "worker")
    return killed


@pytest.mark.timeout(900)
async def test_20000_deliveries_through_two_ingresses_and_four_killed_workers_run_once_each(
    tmp_path: Path,
) -> None:
    ids = [f"cx-{n:05d}" for n in range(UNIQUE)]
    rng = random.Random(7)
    deliveries = ids + rng.sample(ids, DUPLICATES)
    rng.shuffle(deliveries)
    sent = Sent()
    with fake_api(tmp_path) as api, cloud_stack(tmp_path, api) as stack:
        for _ in range(2):
            stack.start("ingress")
        for _ in range(4):
            stack.start("worker")
        urls = [server.url for server in stack.ingresses]
        stop_killing = asyncio.Event()
        killer = asyncio.create_task(keep_killing_workers(stack, stop_killing))

        half = len(deliveries) // 2
        await deliver(urls, deliveries[:half], sent, concurrency=32)
        # Redis dies with every queued job in it, and comes back empty a second later.
        await asyncio.to_thread(stack.redis.stop)
        during_outage = asyncio.create_task(
            deliver(urls, deliveries[half : half + 2000], sent, concurrency=32)
        )
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.redis.start)
        await during_outage
        await deliver(urls, deliveries[half + 2000 :], sent, concurrency=32)

        async def all_done() -> bool:
            query = "SELECT count(*) FROM events WHERE status = 'done'"
            return await asyncio.to_thread(stack.count, query) == UNIQUE

        await eventually(all_done, within=600, interval=1.0)
        stop_killing.set()
        killed = await killer

        statuses = dict(stack.sql("SELECT status, count(*) FROM events GROUP BY status"))
        stored = {row[0] for row in stack.sql("SELECT event_id FROM events")}
        done_runs = stack.sql(
            "SELECT count(*), count(DISTINCT event_id) FROM runs WHERE outcome = 'done'"
        )[0]
        effects = dict(stack.sql("SELECT status, count(*) FROM effects GROUP BY status"))
        counts = api.counts()
        deferred = sum(
            1
            for server in stack.ingresses
            for line in server.log_lines()
            if line.get("event") == "event.enqueue_deferred"
        )

    assert killed >= 5
    # Every delivery was answered: 202 once per event, 200 for every duplicate, nothing else.
    assert sent.other == []
    assert sent.accepted == set(ids)
    assert sent.duplicates == DUPLICATES
    # What got 202 is exactly what PostgreSQL holds, and all of it ran: 16,000 runs, one each.
    assert stored == set(ids)
    assert statuses == {"done": UNIQUE}
    assert done_runs == (UNIQUE, UNIQUE)
    # Each effect key was performed once by the internal API, retried calls included.
    assert effects == {"done": UNIQUE}
    assert len(counts["performed"]) == UNIQUE
    assert set(counts["performed"].values()) == {1}
    # The Redis outage was ridden out by storing and queueing later, not by refusing.
    assert deferred > 0
