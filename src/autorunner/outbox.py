"""The seam between the store and the queue: the two moments an event crosses from one to the
other, and nothing else.

* ``admit`` — a new event is stored (insert-if-new) and queued. The store is the source of
  truth: an event it holds is admitted even when the queue push after it fails (a separate
  queue being down); ``Admission.queued`` is then False and the sweeper queues it later.
* ``settle`` — an attempt ends: its run is recorded, the event moves on (``done``, ``pending``
  at ``retry_at``, or ``dead``) if this worker still holds it, and its job is settled on the
  queue (acknowledged, retried at the same time, or dead-lettered).

Two implementations: ``StoreThenQueue`` here, for a store and a queue that share nothing (the
memory twins; PostgreSQL and Redis), and ``SqliteOutbox`` (``sqlite_outbox.py``), where both
live in one SQLite file and each moment is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import structlog

from autorunner.clock import Clock, system_clock
from autorunner.errors import Unavailable
from autorunner.events import Event
from autorunner.queue.base import Job, Queue
from autorunner.records import RawDelivery, RunRecord
from autorunner.store.base import Events

log = structlog.get_logger("autorunner.outbox")


@dataclass(frozen=True, kw_only=True, slots=True)
class Admission:
    """``inserted`` is False for a duplicate (``existing_id`` names the stored event);
    ``queued`` is True when the new event's job is on the queue."""

    inserted: bool
    existing_id: str | None = None
    queued: bool = False


class Outbox(Protocol):
    """Where events enter the runner and where their attempts end; ``Unavailable`` when
    the store cannot answer (nothing was admitted or settled)."""

    async def admit(self, event: Event, raw: RawDelivery) -> Admission:
        """Store ``event`` if it is new (unique on event and execution id), then queue it."""

    async def settle(
        self,
        job: Job,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Record ``run`` and move its event on as ``run.outcome`` says (only while ``owner``
        holds it), then settle ``job``: runs are appended, never overwritten."""


class StoreThenQueue:
    """``Outbox`` over a store and a queue that share no transaction."""

    def __init__(self, store: Events, queue: Queue, *, clock: Clock = system_clock) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock

    async def admit(self, event: Event, raw: RawDelivery) -> Admission:
        inserted = await self._store.insert_event(event, raw)
        if not inserted.inserted:
            return Admission(inserted=False, existing_id=inserted.existing_id)
        try:
            await self._queue.enqueue(event.event_id)
        except Unavailable as exc:
            log.warning("event.enqueue_deferred", event_id=event.event_id, error=str(exc))
            return Admission(inserted=True, queued=False)
        return Admission(inserted=True, queued=True)

    async def settle(
        self,
        job: Job,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        await self._store.finish(run, owner=owner, retry_at=retry_at, reason=reason)
        await settle_job(self._queue, job, run, retry_at=retry_at, reason=reason, clock=self._clock)


async def settle_job(
    queue: Queue,
    job: Job,
    run: RunRecord,
    *,
    retry_at: float | None,
    reason: str | None,
    clock: Clock,
) -> None:
    """Settle ``job`` on ``queue`` by its receipt as ``run.outcome`` says (a receipt another
    consumer has since replaced settles nothing)."""
    if run.outcome in ("done", "awaiting"):  # an awaiting event comes back by its answer
        await queue.ack(job)
    elif run.outcome == "retry":
        delay = 0.0 if retry_at is None else max(0.0, retry_at - clock())
        await queue.retry(job, delay=delay)
    else:
        await queue.dead_letter(job, reason=reason or run.error or "")
