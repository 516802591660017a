"""Cloud mode at scale, against real servers of its own: two ingress and four worker processes
take 20,000 deliveries (20% duplicates; ``SCALE_OUT_DELIVERIES`` for more) while one worker is SIGKILLed and restarted every
second, the queue server is killed and restarted (Redis losing everything it held; JetStream
keeping what it had written to disk), and PostgreSQL is restarted — each in the middle of the
run, under load. On SQS (moto's server) the same with 500 deliveries (moto is slow) and no queue outage:
moto keeps its queues in memory, and a lost SQS queue is not an outage AWS has."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from pathlib import Path

import pytest

from tests.cloud.harness import Sent, Stack, cloud_stack, deliver, fake_api
from tests.helpers import eventually

DELIVERIES = int(os.environ.get("SCALE_OUT_DELIVERIES", "20000"))
"""Deliveries on Redis and JetStream; the chaos benchmark runs it at 100,000 (docs/benchmarks.md:
``SCALE_OUT_DELIVERIES=100000 pytest tests/cloud/test_scale_out.py -k redis``)."""
SIZES = {
    "redis": (DELIVERIES - DELIVERIES // 5, DELIVERIES // 5),
    "nats": (DELIVERIES - DELIVERIES // 5, DELIVERIES // 5),
    "sqs": (400, 100),
}
"""Unique events and duplicate deliveries (20 %) per queue."""
SECONDS = max(600, DELIVERIES // 40)
"""How long every event may take to be done; the test's own timeout is this plus 300 s."""


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


@pytest.mark.timeout(SECONDS + 300)
@pytest.mark.parametrize("queue", ["redis", "nats", "sqs"])
async def test_deliveries_through_two_ingresses_and_four_killed_workers_run_once_each(
    tmp_path: Path, queue: str
) -> None:
    unique, duplicates = SIZES[queue]
    ids = [f"cx-{n:05d}" for n in range(unique)]
    rng = random.Random(7)
    deliveries = ids + rng.sample(ids, duplicates)
    rng.shuffle(deliveries)
    sent = Sent()
    outage = queue != "sqs"
    with fake_api(tmp_path) as api, cloud_stack(tmp_path, api, queue=queue) as stack:
        for _ in range(2):
            stack.start("ingress")
        for _ in range(4):
            stack.start("worker")
        urls = [server.url for server in stack.ingresses]
        stop_killing = asyncio.Event()
        killer = asyncio.create_task(keep_killing_workers(stack, stop_killing))

        phases = [round(len(deliveries) * f) for f in (0, 0.4, 0.5, 0.7, 0.8, 1)]
        chunks = [deliveries[a:b] for a, b in itertools.pairwise(phases)]
        await deliver(urls, chunks[0], sent, concurrency=32)
        # The queue server dies (Redis with every queued job in it) and is back a second later.
        if outage:
            await asyncio.to_thread(stack.queue.stop)
        during = asyncio.create_task(deliver(urls, chunks[1], sent, concurrency=32))
        if outage:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(stack.queue.start)
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
            return await asyncio.to_thread(stack.count, query) == unique

        await eventually(all_done, within=SECONDS, interval=1.0)
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
    # acknowledged by its 202, or by a 200 (a duplicate) when one of its deliveries was refused
    # or went unanswered after its insert had in fact committed. The two copies of a duplicated
    # event may be in flight together, so the order of its answers says nothing: a timed-out
    # first copy's 0 can be recorded after the second copy's 200.
    assert sent.other == []
    assert all(answers.count(202) <= 1 for answers in sent.answers.values())
    acknowledged = {
        event_id
        for event_id, answers in sent.answers.items()
        if 202 in answers or (200 in answers and any(a in (0, 503) for a in answers))
    }
    assert acknowledged == set(ids), {e: sent.answers.get(e) for e in set(ids) - acknowledged}
    assert sent.duplicates >= duplicates
    # What got 202 is in PostgreSQL, which holds exactly the unique events, and all of it ran:
    # as many runs, one each.
    assert sent.accepted <= stored
    assert stored == set(ids)
    assert statuses == {"done": unique}
    assert done_runs == (unique, unique)
    # Each effect key was performed once by the internal API, retried calls included.
    assert effects == {"done": unique}
    assert len(counts["performed"]) == unique
    assert set(counts["performed"].values()) == {1}
    # The queue's outage was ridden out by storing and queueing later, not by refusing. Without
    # one, an enqueue may still be deferred (SQS registers its sends in PostgreSQL, which
    # restarts here, and moto can take longer than the send timeout under load): the sweeper
    # queues those, and the assertions above hold that they all ran once.
    if outage:
        assert deferred > 0
