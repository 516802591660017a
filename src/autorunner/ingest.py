"""Admission with its metrics and log lines: the one path by which every channel's events
enter the runner."""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from autorunner.events import Event
from autorunner.metrics import Metrics
from autorunner.outbox import Outbox
from autorunner.records import RawDelivery
from autorunner.tracing import OFF, Tracing

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
    """Admits an event through the outbox (atomically unique on event and execution id).

    Returns once the event is durable in the store, and raises ``Unavailable`` when it is
    not: the store is the source of truth, so an event it holds is acknowledged even when it
    could not be queued yet (a separate queue, e.g. Redis, being down). Such an event is
    counted as deferred and the sweeper queues it once the queue is back.
    """

    def __init__(self, *, outbox: Outbox, metrics: Metrics, tracing: Tracing = OFF) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._tracing = tracing
        self._enqueued = {c: metrics.enqueued.labels(c) for c in ("webhook", "sse", "poll", "test")}

    async def ingest(self, event: Event, raw: RawDelivery) -> Ingested:
        """Admit ``event``; the ``admit`` span (a trace's root for a stream or poll delivery)
        is the parent of everything the event leads to."""
        attributes = {"autorunner.event_id": event.event_id, "autorunner.channel": event.channel}
        with self._tracing.span("admit", attributes, kind="producer") as span:
            if self._tracing.enabled:
                event = replace(event, traceparent=self._tracing.traceparent())
            ingested = await self._admit(event, raw)
            span.set({"autorunner.duplicate_of": ingested.duplicate_of})
            return ingested

    async def _admit(self, event: Event, raw: RawDelivery) -> Ingested:
        admitted = await self._outbox.admit(event, raw)
        if not admitted.inserted:
            self._metrics.duplicates.labels(event.channel).inc()
            # A poll finds mostly what arrived already: its reconcile line counts them instead.
            (log.debug if event.channel == "poll" else log.info)(
                "event.duplicate",
                event_id=event.event_id,
                duplicate_of=admitted.existing_id,
                execution_id=event.execution_id,
                channel=event.channel,
            )
            return Ingested(
                event_id=event.event_id, duplicate_of=admitted.existing_id or event.event_id
            )
        if admitted.queued:
            self._enqueued[event.channel].inc()
        else:
            self._metrics.enqueue_deferred.inc()
        log.info(
            "event.accepted",
            event_id=event.event_id,
            execution_id=event.execution_id,
            channel=event.channel,
        )
        return Ingested(event_id=event.event_id)
