"""The Outbox contract, on every deployment's wiring: the SQLite outbox (one transaction for the
store and the queue) and the store-then-queue outbox over the memory twins and over PostgreSQL
and Redis. What is admitted is stored and claimable once; what is settled is recorded, moved on
and settled on the queue as its outcome says, and only by the lease's owner."""

from __future__ import annotations

import asyncio

from autorunner.outbox import Outbox
from autorunner.queue.base import Job, Queue
from autorunner.store.base import StoreBackend
from tests.contract.records import run
from tests.helpers import FakeClock, make_event, raw_delivery

Backends = tuple[StoreBackend, Queue]


async def admit_and_lease(backends: Backends, outbox: Outbox, event_id: str) -> Job:
    store, queue = backends
    admitted = await outbox.admit(make_event(event_id), raw_delivery())
    assert (admitted.inserted, admitted.queued) == (True, True)
    [job] = await queue.claim("w", limit=1, lease=30, wait=0)
    assert await store.acquire(event_id, owner="w", lease=30) is not None
    return job


async def test_an_admitted_event_is_stored_and_claimable_once(
    backends: Backends, outbox: Outbox
) -> None:
    store, queue = backends
    admitted = await outbox.admit(make_event("e1", execution_id="x1"), raw_delivery())
    again = await outbox.admit(make_event("e2", execution_id="x1"), raw_delivery())
    assert (admitted.inserted, admitted.queued) == (True, True)
    assert (again.inserted, again.queued, again.existing_id) == (False, False, "e1")
    assert [j.event_id for j in await queue.claim("w", limit=5, lease=30, wait=0)] == ["e1"]
    assert [e.event_id for e in await store.list_events(limit=5)] == ["e1"]


async def test_a_done_run_leaves_no_queue_entry(
    backends: Backends, outbox: Outbox, clock: FakeClock
) -> None:
    store, queue = backends
    job = await admit_and_lease(backends, outbox, "e1")
    await outbox.settle(job, run("e1"), owner="w")
    clock.advance(100)
    assert await queue.claim("w", limit=1, lease=30, wait=0) == []
    assert (await queue.stats()).depth == 0
    detail = await store.get_event("e1")
    assert detail is not None
    assert (detail.summary.status, [r.outcome for r in detail.runs]) == ("done", ["done"])


async def test_a_retried_run_comes_back_on_the_queue_at_its_time(
    backends: Backends, outbox: Outbox, clock: FakeClock
) -> None:
    _, queue = backends
    job = await admit_and_lease(backends, outbox, "e1")
    await outbox.settle(job, run("e1", outcome="retry"), owner="w", retry_at=clock() + 10)
    assert await queue.claim("w", limit=1, lease=30, wait=0) == []
    clock.advance(10)
    assert [j.event_id for j in await queue.claim("w", limit=1, lease=30, wait=0)] == ["e1"]


async def test_a_dead_run_is_dead_in_the_store_and_on_the_queue(
    backends: Backends, outbox: Outbox, clock: FakeClock
) -> None:
    store, queue = backends
    job = await admit_and_lease(backends, outbox, "e1")
    await outbox.settle(job, run("e1", outcome="dead"), owner="w", reason="gave up")
    clock.advance(100)
    assert await queue.claim("w", limit=1, lease=30, wait=0) == []
    assert (await queue.stats()).dead == 1
    [dead] = await store.list_dead_letters(limit=5)
    assert (dead.event_id, dead.reason) == ("e1", "gave up")


async def test_a_stale_owner_records_its_run_but_moves_and_settles_nothing(
    backends: Backends, outbox: Outbox, clock: FakeClock
) -> None:
    store, queue = backends
    stale = await admit_and_lease(backends, outbox, "e1")
    clock.advance(31)
    [fresh] = await queue.claim("w2", limit=1, lease=30, wait=0)
    assert await store.acquire("e1", owner="w2", lease=30) is not None
    await outbox.settle(stale, run("e1"), owner="w")
    assert (await queue.stats()).in_flight == 1
    detail = await store.get_event("e1")
    assert detail is not None
    assert (detail.summary.status, len(detail.runs)) == ("running", 1)
    await outbox.settle(fresh, run("e1", attempt=2), owner="w2")
    assert (await queue.stats()).depth == (await queue.stats()).in_flight == 0


async def test_concurrent_admissions_store_and_queue_each_event_once_however_they_collide(
    backends: Backends, outbox: Outbox
) -> None:
    """Admissions that arrive together (on SQLite, in one group commit, as one statement)
    collide by event id and by execution id as admissions one at a time do."""
    store, queue = backends
    events = [
        make_event("e1"),
        make_event("e1"),
        make_event("e2", execution_id="x"),
        make_event("e3", execution_id="x"),
        *(make_event(f"f{n}") for n in range(20)),
        make_event("e1"),
    ]
    results = await asyncio.gather(*(outbox.admit(e, raw_delivery()) for e in events))
    inserted = [e.event_id for e, r in zip(events, results, strict=True) if r.inserted]
    assert inserted.count("e1") == 1
    assert len(inserted) == 22
    assert len({"e2", "e3"} & set(inserted)) == 1
    assert {f"f{n}" for n in range(20)} <= set(inserted)
    for event, result in zip(events, results, strict=True):
        if not result.inserted:
            expected = (
                event.event_id if event.event_id == "e1" else ({"e2", "e3"} & set(inserted)).pop()
            )
            assert (result.queued, result.existing_id) == (False, expected)
    claimed = [j.event_id for j in await queue.claim("w", limit=50, lease=30, wait=0)]
    assert sorted(claimed) == sorted(inserted)
    assert sorted(e.event_id for e in await store.list_events(limit=50)) == sorted(inserted)
