"""Each process's counts flushed into the store's tallies: what the counters gained, once."""

from __future__ import annotations

import asyncio

from autorunner.metrics import Metrics
from autorunner.store.memory import MemoryStore
from autorunner.tallies import Tallies, counted
from tests.helpers import FakeClock


def test_counted_names_refusals_by_reason_and_runs_by_outcome() -> None:
    metrics = Metrics()
    metrics.rejected.labels("webhook", "bad_signature").inc(2)
    metrics.rejected.labels("sse", "bad_signature").inc()
    metrics.http_refused.labels("header_timeout").inc()
    metrics.processed.labels("done").inc(4)
    assert counted(metrics) == {
        "refused:bad_signature": 3,
        "refused:header_timeout": 1,
        "runs:done": 4,
    }


async def test_a_flush_adds_only_what_the_counters_gained_since_the_last() -> None:
    clock, metrics = FakeClock(), Metrics()
    store = MemoryStore(clock=clock)
    tallies = Tallies(store, metrics, clock=clock)
    metrics.processed.labels("done").inc(3)
    await tallies.flush()
    metrics.processed.labels("done").inc()
    await tallies.flush()
    await tallies.flush()  # nothing new: nothing added
    assert await store.tallies(since_minute=0) == {"runs:done": 4}


async def test_counts_a_store_outage_kept_from_the_store_reach_it_at_the_next_flush() -> None:
    clock, metrics = FakeClock(), Metrics()
    store = MemoryStore(clock=clock)
    tallies = Tallies(store, metrics, clock=clock)
    metrics.rejected.labels("webhook", "bad_signature").inc(2)
    store.available = False
    await tallies.flush()
    store.available = True
    clock.advance(60)
    await tallies.flush()
    minute = int(clock() // 60)
    assert await store.tallies(since_minute=minute) == {"refused:bad_signature": 2}


async def test_a_stopping_process_flushes_once_more() -> None:
    clock, metrics = FakeClock(), Metrics()
    store = MemoryStore(clock=clock)
    stop = asyncio.Event()
    running = asyncio.create_task(Tallies(store, metrics, clock=clock).run(stop, every=3600))
    metrics.processed.labels("dead").inc()
    stop.set()
    await running
    assert await store.tallies(since_minute=0) == {"runs:dead": 1}


async def test_flush_due_flushes_at_most_once_per_period() -> None:
    clock, metrics = FakeClock(), Metrics()
    store = MemoryStore(clock=clock)
    tallies = Tallies(store, metrics, clock=clock)
    metrics.processed.labels("done").inc()
    await tallies.flush_due(every=3600)
    metrics.processed.labels("done").inc()
    await tallies.flush_due(every=3600)  # within the period: kept for later
    assert await store.tallies(since_minute=0) == {"runs:done": 1}
