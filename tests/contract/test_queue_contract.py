"""The Queue contract: every backend must pass every test here.

Memory, SQLite and Redis keep leases on the caller's clock, so their tests move a fake one. SQS
and JetStream keep them on the server's clock, which no test can move: there the same tests run
with one-second leases and let real time pass (``Pace``) — the only sleeps in this suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autorunner.queue.base import Queue
from autorunner.queue.memory import MemoryQueue
from autorunner.queue.sqlite import SqliteQueue
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store import sqlite as sqlite_store
from tests.backends import nats_queue, postgres_schema, redis_queue, sqs_queue
from tests.helpers import FakeClock
from tests.services import MotoSqs, PrivateNats


@dataclass
class Pace:
    """How time passes for a backend: ``lease`` is long enough to outlast a test's own steps."""

    lease: float
    clock: FakeClock | None
    delayed_apart: bool = True
    """Whether ``stats`` tells delayed jobs from ready ones (JetStream cannot)."""
    stale_receipts_refused: bool = True
    """Whether an earlier delivery's receipt settles nothing (JetStream honours it)."""

    async def elapse(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)  # the server's clock: nothing else moves it

    async def lapse(self) -> None:
        """Let a lease run out."""
        await self.elapse(self.lease * 1.2)


Case = tuple[Queue, Pace]


@pytest.fixture(params=["memory", "sqlite", "redis", "nats", "sqs"])
async def case(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Case]:
    fake = Pace(lease=30, clock=clock)
    if request.param == "memory":
        yield MemoryQueue(clock=clock), fake
    elif request.param == "sqlite":
        db = SqliteDatabase(str(tmp_path / "queue.db"), migrations=sqlite_store.migrations())
        await db.open()
        try:
            yield SqliteQueue(db, clock=clock), fake
        finally:
            await db.close()
    elif request.param == "redis":
        async with redis_queue(clock) as queue:
            yield queue, fake
    elif request.param == "nats":
        server: PrivateNats = request.getfixturevalue("nats_server")
        async with nats_queue(server, lease=1.5) as queue:
            yield (
                queue,
                Pace(lease=1.5, clock=None, delayed_apart=False, stale_receipts_refused=False),
            )
    else:
        moto: MotoSqs = request.getfixturevalue("sqs_server")
        async with postgres_schema() as url, sqs_queue(moto, url) as queue:
            yield queue, Pace(lease=1, clock=None)


async def test_enqueued_job_is_claimed_once(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    jobs = await queue.claim("c1", limit=10, lease=pace.lease, wait=0)
    assert [(j.event_id, j.deliveries) for j in jobs] == [("e1", 1)]
    assert await queue.claim("c2", limit=10, lease=pace.lease, wait=0) == []


async def test_enqueue_is_idempotent_per_event_id(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    await queue.enqueue("e1")
    assert len(await queue.claim("c", limit=10, lease=pace.lease, wait=0)) == 1
    assert await queue.claim("c", limit=10, lease=pace.lease, wait=0) == []


async def test_enqueue_of_a_claimed_job_does_not_deliver_it_twice(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    await queue.claim("c1", limit=10, lease=pace.lease, wait=0)
    await queue.enqueue("e1")
    assert await queue.claim("c2", limit=10, lease=pace.lease, wait=0) == []


async def test_any_event_id_is_carried_unchanged(case: Case) -> None:
    queue, pace = case
    odd = "exec.1 *>/ü\u00e9 " + "x" * 300
    await queue.enqueue(odd)
    await queue.enqueue(odd)
    jobs = await queue.claim("c", limit=10, lease=pace.lease, wait=0)
    assert [j.event_id for j in jobs] == [odd]


async def test_claim_respects_limit_and_fifo_order(case: Case) -> None:
    queue, pace = case
    for n in range(5):
        await queue.enqueue(f"e{n}")
        await pace.elapse(0.001)
    first = await queue.claim("c", limit=2, lease=pace.lease, wait=0)
    second = await queue.claim("c", limit=10, lease=pace.lease, wait=0)
    assert [j.event_id for j in first] == ["e0", "e1"]
    assert [j.event_id for j in second] == ["e2", "e3", "e4"]


async def test_unacked_job_comes_back_after_its_lease(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    await queue.claim("c1", limit=1, lease=pace.lease, wait=0)
    await pace.lapse()
    again = await queue.claim("c2", limit=1, lease=pace.lease, wait=0)
    assert [(j.event_id, j.deliveries) for j in again] == [("e1", 2)]


async def test_extend_keeps_a_claimed_job_invisible(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    jobs = await queue.claim("c1", limit=1, lease=pace.lease, wait=0)
    await pace.elapse(pace.lease * 0.7)
    await queue.extend(jobs, lease=pace.lease)
    await pace.elapse(pace.lease * 0.7)
    assert await queue.claim("c2", limit=1, lease=pace.lease, wait=0) == []


async def test_acked_job_is_gone(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=pace.lease, wait=0)
    await queue.ack(job)
    await pace.lapse()
    assert await queue.claim("c", limit=1, lease=pace.lease, wait=0) == []
    assert (await queue.stats()).depth == 0


async def test_acked_job_can_be_enqueued_again(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=pace.lease, wait=0)
    await queue.ack(job)
    await queue.enqueue("e1")
    assert [j.event_id for j in await queue.claim("c", limit=1, lease=pace.lease, wait=0)] == ["e1"]


async def test_stale_receipt_cannot_ack_a_job_claimed_again(case: Case) -> None:
    queue, pace = case
    if not pace.stale_receipts_refused:
        pytest.skip("JetStream honours an earlier delivery's ack (see queue.nats)")
    await queue.enqueue("e1")
    [stale] = await queue.claim("c1", limit=1, lease=pace.lease, wait=0)
    await pace.lapse()
    [fresh] = await queue.claim("c2", limit=1, lease=pace.lease, wait=0)
    await queue.ack(stale)
    await queue.retry(stale, delay=0)
    await queue.dead_letter(stale, reason="stale")
    await pace.lapse()
    assert [j.event_id for j in await queue.claim("c3", limit=1, lease=pace.lease, wait=0)] == [
        "e1"
    ]
    assert fresh.receipt != stale.receipt


async def test_retry_hides_a_job_until_its_delay(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=pace.lease, wait=0)
    await queue.retry(job, delay=pace.lease)
    assert await queue.claim("c", limit=1, lease=pace.lease, wait=0) == []
    await pace.lapse()
    assert [j.event_id for j in await queue.claim("c", limit=1, lease=pace.lease, wait=0)] == ["e1"]


async def test_delayed_enqueue_becomes_visible_at_its_time(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1", delay=pace.lease)
    assert await queue.claim("c", limit=1, lease=pace.lease, wait=0) == []
    await pace.lapse()
    assert len(await queue.claim("c", limit=1, lease=pace.lease, wait=0)) == 1


async def test_dead_lettered_job_is_not_delivered_until_enqueued_again(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=pace.lease, wait=0)
    await queue.dead_letter(job, reason="boom")
    await pace.lapse()
    assert await queue.claim("c", limit=1, lease=pace.lease, wait=0) == []
    assert (await queue.stats()).dead == 1
    await queue.enqueue("e1")
    assert len(await queue.claim("c", limit=1, lease=pace.lease, wait=0)) == 1
    assert (await queue.stats()).dead == 0


async def test_concurrent_claims_never_share_a_job(case: Case) -> None:
    queue, pace = case
    for n in range(50):
        await queue.enqueue(f"e{n}")
    # A lease long enough not to lapse while ten claims share a loaded machine (SQS's is per
    # claim; a lapse would rightly hand a job to a second claim, which is not what this pins).
    batches = await asyncio.gather(
        *(queue.claim(f"c{n}", limit=7, lease=max(pace.lease, 30), wait=0) for n in range(10))
    )
    claimed = [j.event_id for batch in batches for j in batch]
    assert sorted(claimed) == sorted(f"e{n}" for n in range(50))


async def test_claim_waits_for_a_job_enqueued_meanwhile(case: Case) -> None:
    queue, pace = case
    waiting = asyncio.create_task(queue.claim("c", limit=1, lease=pace.lease, wait=5))
    await asyncio.sleep(0)
    await queue.enqueue("late")
    jobs = await asyncio.wait_for(waiting, timeout=10)
    assert [j.event_id for j in jobs] == ["late"]


async def test_stats_report_depth_in_flight_and_oldest_age(case: Case) -> None:
    queue, pace = case
    await queue.enqueue("e1")
    await queue.enqueue("e2")
    await queue.enqueue("e3", delay=60)
    await queue.claim("c", limit=1, lease=pace.lease, wait=0)
    waited = pace.lease / 4
    await pace.elapse(waited)
    stats = await queue.stats()
    ready = 1 if pace.delayed_apart else 2  # JetStream counts the delayed job as ready
    assert (stats.depth, stats.ready, stats.in_flight) == (2, ready, 1)
    assert stats.oldest_ready_age == pytest.approx(waited, abs=0 if pace.clock else 0.5)
