"""The sweeper: re-enqueue stored events that no queue entry is bringing to a worker.

The store is the source of truth (a transactional outbox): an event that is unfinished, not
leased and overdue by ``after`` seconds is enqueued again. Enqueue is idempotent per event id and
a worker leases the event in the store before running it, so a spurious re-enqueue costs one
wasted claim, never a second run.
"""

from __future__ import annotations

import asyncio

import structlog

from autorunner.clock import Clock, sleep_unless, system_clock
from autorunner.errors import Unavailable
from autorunner.metrics import Metrics
from autorunner.queue.base import Queue
from autorunner.store.base import Store

log = structlog.get_logger("autorunner.sweeper")


async def sweep_once(
    store: Store, queue: Queue, *, after: float, clock: Clock, limit: int = 1000
) -> int:
    """One pass; returns how many events were re-enqueued: unfinished ones overdue, and those
    whose approval timed out (answered as its ``on_timeout`` says) or was answered while they
    were being parked."""
    now = clock()
    try:
        resumed = await store.expire_approvals(now=now, limit=limit)
    except Unavailable as exc:  # the overdue events below are swept all the same
        log.warning("sweeper.approvals_unavailable", error=str(exc))
        resumed = []
    ids = await store.sweepable(older_than=now - after, limit=limit)
    for event_id in dict.fromkeys([*resumed, *ids]):
        await queue.enqueue(event_id)
    return len(resumed) + len(ids)


async def run_sweeper(
    store: Store,
    queue: Queue,
    stop: asyncio.Event,
    *,
    interval: float,
    after: float,
    metrics: Metrics,
    clock: Clock = system_clock,
) -> None:
    """Sweep every ``interval`` seconds (and once at start) until ``stop`` is set."""
    while not stop.is_set():
        try:
            count = await sweep_once(store, queue, after=after, clock=clock)
        except Unavailable as exc:
            log.warning("sweeper.unavailable", error=str(exc))
        else:
            if count:
                metrics.swept.inc(count)
                log.info("sweeper.requeued", count=count)
        await sleep_unless(stop, interval)
