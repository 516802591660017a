"""The in-memory queue: the twin of the durable backends for unit tests (same contract suite).

A job is visible when ``available_at <= now``; claiming moves ``available_at`` to the end of the
lease (a visibility timeout), so an unacknowledged job comes back by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

from autorunner.clock import Clock, system_clock
from autorunner.queue.base import Job, QueueStats


@dataclass(slots=True)
class _Entry:
    event_id: str
    available_at: float
    enqueued_at: float
    deliveries: int = 0
    receipt: str | None = None


class MemoryQueue:
    """``Queue`` in a dictionary."""

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._dead: dict[str, str] = {}
        self._tokens = itertools.count(1)
        self._wakeup: asyncio.Event | None = None

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def enqueue(self, event_id: str, *, delay: float = 0.0) -> None:
        now = self._clock()
        self._dead.pop(event_id, None)
        entry = self._entries.get(event_id)
        if entry is None:
            self._entries[event_id] = _Entry(event_id, now + delay, now)
        elif entry.receipt is None:
            entry.available_at = min(entry.available_at, now + delay)
        self._wake()

    async def claim(self, consumer: str, *, limit: int, lease: float, wait: float) -> list[Job]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            jobs = self._take(consumer, limit, lease)
            remaining = deadline - loop.time()
            if jobs or remaining <= 0:
                return jobs
            self._wakeup = self._wakeup or asyncio.Event()
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(remaining, 0.05))

    def _take(self, consumer: str, limit: int, lease: float) -> list[Job]:
        now = self._clock()
        ready = sorted(
            (e for e in self._entries.values() if e.available_at <= now),
            key=lambda e: e.available_at,
        )[:limit]
        token = f"{consumer}/{next(self._tokens)}"
        jobs = []
        for entry in ready:
            entry.deliveries += 1
            entry.receipt = token
            entry.available_at = now + lease
            jobs.append(Job(event_id=entry.event_id, deliveries=entry.deliveries, receipt=token))
        return jobs

    def _held(self, job: Job) -> _Entry | None:
        entry = self._entries.get(job.event_id)
        return entry if entry is not None and entry.receipt == job.receipt else None

    async def extend(self, jobs: list[Job], *, lease: float) -> None:
        for job in jobs:
            if entry := self._held(job):
                entry.available_at = self._clock() + lease

    async def ack(self, job: Job) -> None:
        if self._held(job):
            del self._entries[job.event_id]

    async def retry(self, job: Job, *, delay: float) -> None:
        if entry := self._held(job):
            entry.receipt = None
            entry.available_at = self._clock() + delay
            self._wake()

    async def dead_letter(self, job: Job, *, reason: str) -> None:
        if self._held(job):
            del self._entries[job.event_id]
            self._dead[job.event_id] = reason

    async def stats(self) -> QueueStats:
        now = self._clock()
        ready = [e for e in self._entries.values() if e.available_at <= now]
        in_flight = sum(1 for e in self._entries.values() if e.receipt and e.available_at > now)
        oldest = min((now - e.enqueued_at for e in ready), default=None)
        return QueueStats(
            depth=len(self._entries) - in_flight,
            ready=len(ready),
            in_flight=in_flight,
            dead=len(self._dead),
            oldest_ready_age=oldest,
        )

    async def close(self) -> None:
        return None
