"""The Queue contract: every backend (memory, sqlite) must pass every test here."""

from __future__ import annotations

import asyncio

from autorunner.queue.base import Queue
from autorunner.store.base import StoreBackend
from tests.helpers import FakeClock

Backends = tuple[StoreBackend, Queue]


async def test_enqueued_job_is_claimed_once(backends: Backends) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    jobs = await queue.claim("c1", limit=10, lease=30, wait=0)
    assert [(j.event_id, j.deliveries) for j in jobs] == [("e1", 1)]
    assert await queue.claim("c2", limit=10, lease=30, wait=0) == []


async def test_enqueue_is_idempotent_per_event_id(backends: Backends) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    await queue.enqueue("e1")
    assert len(await queue.claim("c", limit=10, lease=30, wait=0)) == 1


async def test_enqueue_of_a_claimed_job_does_not_deliver_it_twice(backends: Backends) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    await queue.claim("c1", limit=10, lease=30, wait=0)
    await queue.enqueue("e1")
    assert await queue.claim("c2", limit=10, lease=30, wait=0) == []


async def test_claim_respects_limit_and_fifo_order(backends: Backends, clock: FakeClock) -> None:
    _, queue = backends
    for n in range(5):
        await queue.enqueue(f"e{n}")
        clock.advance(0.001)
    first = await queue.claim("c", limit=2, lease=30, wait=0)
    second = await queue.claim("c", limit=10, lease=30, wait=0)
    assert [j.event_id for j in first] == ["e0", "e1"]
    assert [j.event_id for j in second] == ["e2", "e3", "e4"]


async def test_unacked_job_comes_back_after_its_lease(backends: Backends, clock: FakeClock) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    await queue.claim("c1", limit=1, lease=30, wait=0)
    clock.advance(31)
    again = await queue.claim("c2", limit=1, lease=30, wait=0)
    assert [(j.event_id, j.deliveries) for j in again] == [("e1", 2)]


async def test_extend_keeps_a_claimed_job_invisible(backends: Backends, clock: FakeClock) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    jobs = await queue.claim("c1", limit=1, lease=30, wait=0)
    clock.advance(20)
    await queue.extend(jobs, lease=30)
    clock.advance(20)
    assert await queue.claim("c2", limit=1, lease=30, wait=0) == []


async def test_acked_job_is_gone(backends: Backends, clock: FakeClock) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=30, wait=0)
    await queue.ack(job)
    clock.advance(100)
    assert await queue.claim("c", limit=1, lease=30, wait=0) == []
    assert (await queue.stats()).depth == 0


async def test_stale_receipt_cannot_ack_a_job_claimed_again(
    backends: Backends, clock: FakeClock
) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    [stale] = await queue.claim("c1", limit=1, lease=30, wait=0)
    clock.advance(31)
    [fresh] = await queue.claim("c2", limit=1, lease=30, wait=0)
    await queue.ack(stale)
    await queue.retry(stale, delay=0)
    await queue.dead_letter(stale, reason="stale")
    clock.advance(31)
    assert [j.event_id for j in await queue.claim("c3", limit=1, lease=30, wait=0)] == ["e1"]
    assert fresh.receipt != stale.receipt


async def test_retry_hides_a_job_until_its_delay(backends: Backends, clock: FakeClock) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=30, wait=0)
    await queue.retry(job, delay=10)
    assert await queue.claim("c", limit=1, lease=30, wait=0) == []
    clock.advance(10)
    assert [j.event_id for j in await queue.claim("c", limit=1, lease=30, wait=0)] == ["e1"]


async def test_delayed_enqueue_becomes_visible_at_its_time(
    backends: Backends, clock: FakeClock
) -> None:
    _, queue = backends
    await queue.enqueue("e1", delay=5)
    assert await queue.claim("c", limit=1, lease=30, wait=0) == []
    clock.advance(5)
    assert len(await queue.claim("c", limit=1, lease=30, wait=0)) == 1


async def test_dead_lettered_job_is_not_delivered_until_enqueued_again(
    backends: Backends, clock: FakeClock
) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    [job] = await queue.claim("c", limit=1, lease=30, wait=0)
    await queue.dead_letter(job, reason="boom")
    clock.advance(100)
    assert await queue.claim("c", limit=1, lease=30, wait=0) == []
    assert (await queue.stats()).dead == 1
    await queue.enqueue("e1")
    assert len(await queue.claim("c", limit=1, lease=30, wait=0)) == 1
    assert (await queue.stats()).dead == 0


async def test_concurrent_claims_never_share_a_job(backends: Backends) -> None:
    _, queue = backends
    for n in range(50):
        await queue.enqueue(f"e{n}")
    batches = await asyncio.gather(
        *(queue.claim(f"c{n}", limit=7, lease=30, wait=0) for n in range(10))
    )
    claimed = [j.event_id for batch in batches for j in batch]
    assert sorted(claimed) == sorted(f"e{n}" for n in range(50))


async def test_claim_waits_for_a_job_enqueued_meanwhile(backends: Backends) -> None:
    _, queue = backends
    waiting = asyncio.create_task(queue.claim("c", limit=1, lease=30, wait=5))
    await asyncio.sleep(0)
    await queue.enqueue("late")
    jobs = await asyncio.wait_for(waiting, timeout=5)
    assert [j.event_id for j in jobs] == ["late"]


async def test_stats_report_depth_in_flight_and_oldest_age(
    backends: Backends, clock: FakeClock
) -> None:
    _, queue = backends
    await queue.enqueue("e1")
    await queue.enqueue("e2")
    await queue.enqueue("e3", delay=60)
    await queue.claim("c", limit=1, lease=30, wait=0)
    clock.advance(4)
    stats = await queue.stats()
    assert (stats.depth, stats.ready, stats.in_flight) == (2, 1, 1)
    assert stats.oldest_ready_age == 4
