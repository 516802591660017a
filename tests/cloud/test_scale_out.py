"""Cloud mode at scale, against real Redis and PostgreSQL servers of its own: two ingress and
four worker processes take 20,000 deliveries (20% duplicates) while one worker is SIGKILLed
and restarted every second, Redis is killed (losing everything it held) and restarted, and
PostgreSQL is restarted — each in the middle of the run, under load."""

from __future__ import annotations

import asyncio
import itertools
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

        phases = [0, 8_000, 10_000, 14_000, 16_000, len(deliveries)]
        chunks = [deliveries[a:b] for a, b in itertools.pairwise(phases)]
        await deliver(urls, chunks[0], sent, concurrency=32)
        # Redis dies with every queued job in it, and comes back empty a second later.
        await asyncio.to_thread(stack.redis.stop)
        during = asyncio.create_task(deliver(urls, chunks[1], sent, concurrency=32))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.redis.start)
        await during
        await deliver(urls, chunks[2], sent, concurrency=32)
        # PostgreSQL restarts: the ingresses refuse meanwhile and the senders, like Auto, retry.
        refused_before = len(sent.refused)
        await asyncio.to_thread(stack.postgres.stop)
        during = asyncio.create_task(deliver(urls, chunks[3], sent, concurrency=32))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(stack.postgres.start)
        await during
        refused_by_postgres = len(sent.refused) - refused_before
        await deliver(urls, chunks[4], sent, concurrency=32)

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
    assert refused_by_postgres > 0
    # Every delivery was answered in the end; no event was accepted twice. An event is
    # acknowledged by its 202, or by a 200 after a refusal whose insert had in fact committed.
    assert sent.other == []
    assert all(answers.count(202) <= 1 for answers in sent.answers.values())
    acknowledged = {
        event_id
        for event_id, answers in sent.answers.items()
        if 202 in answers or (200 in answers and answers[0] in (0, 503))
    }
    assert acknowledged == set(ids)
    assert sent.duplicates >= DUPLICATES
    # What got 202 is in PostgreSQL, which holds exactly the 16,000 events, and all of it ran:
    # 16,000 runs, one each.
    assert sent.accepted <= stored
    assert stored == set(ids)
    assert statuses == {"done": UNIQUE}
    assert done_runs == (UNIQUE, UNIQUE)
    # Each effect key was performed once by the internal API, retried calls included.
    assert effects == {"done": UNIQUE}
    assert len(counts["performed"]) == UNIQUE
    assert set(counts["performed"].values()) == {1}
    # The Redis outage was ridden out by storing and queueing later, not by refusing.
    assert deferred > 0
