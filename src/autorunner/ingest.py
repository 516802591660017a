"""Insert-if-new then enqueue: the one path by which every channel's events enter the runner."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from autorunner.errors import StoreUnavailable
from autorunner.events import Event
from autorunner.metrics import Metrics
from autorunner.queue.base import Queue
from autorunner.records import RawDelivery
from autorunner.store.base import Store

log = structlog.get_logger("autorunner.ingest")


@dataclass(frozen=True, kw_only=True, slots=True)
class Ingested:
    """``duplicate_of`` names the stored event when this delivery was a duplicate."""

    event_id: str
    duplicate_of: str | None = None

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


class Ingestor:
    """Stores an event (atomically unique on event and execution id), then queues it.

    Returns once the event is durable in the store, and raises ``StoreUnavailable`` when it is
    not: the store is the source of truth, so an event it holds is acknowledged even when the
    queue push after it fails (a separate queue, e.g. Redis, being down). Such an event is
    counted as deferred and the sweeper queues it once the queue is back.
    """

    def __init__(self, *, store: Store, queue: Queue, metrics: Metrics) -> None:
        self._store = store
        self._queue = queue
        self._metrics = metrics
        self._enqueued = {c: metrics.enqueued.labels(c) for c in ("webhook", "sse", "poll", "test")}

    async def ingest(self, event: Event, raw: RawDelivery) -> Ingested:
        result = await self._store.insert_event(event, raw)
        if not result.inserted:
            self._metrics.duplicates.labels(event.channel).inc()
            log.info(
                "event.duplicate",
                event_id=event.event_id,
                duplicate_of=result.existing_id,
                execution_id=event.execution_id,
                channel=event.channel,
            )
            return Ingested(
                event_id=event.event_id, duplicate_of=result.existing_id or event.event_id
            )
        queued = result.queued
        if not queued:
            try:
                await self._queue.enqueue(event.event_id)
                queued = True
            except StoreUnavailable as exc:
                self._metrics.enqueue_deferred.inc()
                log.warning("event.enqueue_deferred", event_id=event.event_id, error=str(exc))
        if queued:
            self._enqueued[event.channel].inc()
        log.info(
            "event.accepted",
            event_id=event.event_id,
            execution_id=event.execution_id,
            channel=event.channel,
        )
        return Ingested(event_id=event.event_id)
