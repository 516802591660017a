"""The SSE subscriber: one stream (a query's, or the account's), kept open and made gap-free.

* After every (re)connect, on ``end``/``410``/``204``, and every ``reconcile_interval`` seconds,
  the query's executions are polled and fed through the same insert-if-new path as webhooks
  (the stream is live-only: what fires while disconnected exists only in the poll).
* A dropped connection, an ``error`` frame, or silence longer than ``keepalive * silence_factor``
  reconnects with exponential backoff and full jitter (reset once a connection delivered data).
* ``410``, ``204`` and ``event: end`` stop a query's stream cleanly (the account stream
  reconnects after ``end``); ``401``/``403``/``404`` stop it with an error naming what to check.
* A malformed frame is skipped and counted; the frames after it are read as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import httpx2
import structlog

from autorunner.auto_client import AutoClient
from autorunner.clock import sleep_unless
from autorunner.errors import AutoError, AutoUnavailable, InvalidEvent, Unavailable
from autorunner.events import normalize_sse
from autorunner.ingest import Ingestor
from autorunner.metrics import Metrics
from autorunner.reconcile import Reconciler
from autorunner.records import RawDelivery
from autorunner.retry import RetryPolicy
from autorunner.sse import ServerSentEvent, SSEDecoder

log = structlog.get_logger("autorunner.subscriber")

Ending = Literal["ended", "gone", "no_content", "stopped"]
_Outcome = Literal["ended", "gone", "no_content", "dropped", "silent"]
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class SubscriberConfig:
    """Timing of one subscriber."""

    keepalive: float = 15.0
    silence_factor: float = 3.0
    reconcile_interval: float = 300.0
    backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_delay=1.0, max_delay=60.0)
    )


class Subscriber:
    """Follows one stream until it ends, ``stop`` is set, or Auto refuses the credentials."""

    def __init__(
        self,
        *,
        client: AutoClient,
        ingestor: Ingestor,
        reconciler: Reconciler,
        metrics: Metrics,
        query_id: str | None,
        config: SubscriberConfig | None = None,
        rand: Callable[[], float] = random.random,
        report: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> None:
        self._report = report
        self._client = client
        self._ingestor = ingestor
        self._reconciler = reconciler
        self._metrics = metrics
        self.query_id = query_id
        self._config = config or SubscriberConfig()
        self._rand = rand
        self.connections = 0

    async def run(self, stop: asyncio.Event) -> Ending:
        """Subscribe until the stream ends (returns why) or ``stop``; raises ``AutoError`` on 401/403/404."""
        periodic = asyncio.create_task(self._periodic_reconcile(stop))
        try:
            return await self._follow(stop)
        finally:
            periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await periodic

    async def _follow(self, stop: asyncio.Event) -> Ending:
        failures = 0
        while not stop.is_set():
            connected = self.connections
            outcome = await _until_stopped(stop, self._connect_once())
            if outcome is STOPPED:
                return "stopped"
            if outcome in ("gone", "no_content") or (
                outcome == "ended" and self.query_id is not None
            ):
                await self._state(None)  # ended as Auto meant it to: nothing is down
                await self._reconcile()
                log.info("stream.stopped", query_id=self.query_id, reason=outcome)
                return outcome
            if outcome == "ended":  # the account stream: reconnect after a gap fill
                await self._reconcile()
            if outcome != "ended":
                await self._state(outcome)
            failures = 1 if self.connections > connected else failures + 1
            delay = self._config.backoff.ceiling(failures) * self._rand()
            log.warning(
                "stream.reconnecting", query_id=self.query_id, reason=outcome, delay=round(delay, 3)
            )
            if await sleep_unless(stop, delay):
                return "stopped"
        return "stopped"

    async def _connect_once(self) -> _Outcome:
        path = f"/queries/{self.query_id}/stream" if self.query_id else "/queries/stream"
        try:
            async with self._client.open_stream(self.query_id) as response:
                status = response.status_code
                if status == 204:
                    return "no_content"
                if status == 410:
                    return "gone"
                if status in (401, 403, 404):
                    await response.aread()
                    raise self._client.refusal("GET", path, response)
                if status != 200:
                    log.warning("stream.refused", query_id=self.query_id, status=status)
                    return "dropped"
                self.connections += 1
                self._metrics.sse_connections.inc()
                await self._state(None)
                await self._reconcile()
                return await self._read(response)
        except (httpx2.TransportError, AutoUnavailable) as exc:
            log.warning("stream.failed", query_id=self.query_id, error=type(exc).__name__)
            return "dropped"

    async def _read(self, response: httpx2.Response) -> _Outcome:
        decoder = SSEDecoder()
        chunks = response.aiter_bytes()
        silence = self._config.keepalive * self._config.silence_factor
        while True:
            try:
                async with asyncio.timeout(silence):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                return "silent"
            if chunk is None:
                return "dropped"
            for frame in decoder.feed(chunk):
                if frame.event == "end":
                    return "ended"
                if frame.event == "error":
                    log.warning("stream.error_frame", query_id=self.query_id, data=frame.data[:200])
                    return "dropped"
                await self._on_frame(frame)

    async def _on_frame(self, frame: ServerSentEvent) -> None:
        try:
            event = normalize_sse(frame.event, frame.id, frame.data)
        except InvalidEvent as exc:
            self._metrics.rejected.labels("sse", "malformed_frame").inc()
            log.warning(
                "stream.malformed_frame",
                query_id=self.query_id,
                sse_event=frame.event,
                error=str(exc),
            )
            return
        if event is None:
            return
        self._metrics.received.labels("sse").inc()
        raw = RawDelivery(
            received_at=time.time(),
            headers={"sse-event": frame.event, "sse-id": frame.id or ""},
            body=frame.data,
        )
        try:
            await self._ingestor.ingest(event, raw)
        except Unavailable as exc:
            # The next reconciliation polls this execution again: nothing is lost for good.
            log.error("stream.store_unavailable", event_id=event.event_id, error=str(exc))  # noqa: TRY400

    async def _state(self, down: str | None) -> None:
        if self._report is not None:
            await self._report(down)

    async def _reconcile(self) -> None:
        try:
            await self._reconciler.reconcile(self.query_id)
            self._metrics.reconciliations.inc()
        except (AutoError, Unavailable, httpx2.TransportError) as exc:
            log.warning("reconcile.failed", query_id=self.query_id, error=str(exc))

    async def _periodic_reconcile(self, stop: asyncio.Event) -> None:
        while not await sleep_unless(stop, self._config.reconcile_interval):
            await self._reconcile()


class _Stopped(enum.Enum):
    STOPPED = "stopped"


STOPPED = _Stopped.STOPPED


async def _until_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T | _Stopped:
    """Await ``work`` unless ``stop`` is set first; then cancel it and return ``STOPPED``."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return STOPPED
