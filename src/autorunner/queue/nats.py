"""The NATS JetStream queue (cloud mode, ``QUEUE_URL=nats://HOST:PORT``).

Two streams per queue name, both on file storage:

* ``jobs`` — a work-queue stream, one subject per event id (``autorunner.NAME.jobs.TOKEN``)
  holding at most one message, new ones discarded per subject: a job is enqueued once per event
  id while it waits or runs, natively, and enqueued again once acknowledged or dead-lettered
  (work-queue retention removes a message when it is acknowledged or terminated). One durable
  pull consumer (``workers``) serves every worker: its ``ack_wait`` is the lease
  (``LEASE_SECONDS``), which the running worker's heartbeat renews with in-progress acks, so a
  long job is never handed to a second worker while its worker lives, and a SIGKILLed worker's
  jobs are delivered again once ``ack_wait`` passes. ``retry`` is a ``NAK`` with a delay;
  ``max_deliver`` is unlimited because the store counts attempts and the worker decides when
  an event is dead (a non-retryable error is dead at its first attempt).
* ``dead`` — one message per dead-lettered event id (its reason in a header), purged when the
  event is enqueued again (a redrive).

What JetStream cannot say, and what we do about it:

* The lease is the consumer's ``ack_wait``, one value for every job: ``claim``'s and
  ``extend``'s ``lease`` must equal the queue's (the worker passes ``LEASE_SECONDS`` to both).
* A delayed ``enqueue`` is a header read at claim: a job claimed early is sent back with a
  ``NAK`` for the rest of its delay, which counts as a delivery (only the tracing attribute reads
  that count). ``stats`` counts such jobs as ready.
* A server that comes back without its data has lost the streams: the next call declares
  them again (what they held is brought back by the sweeper, as after a Redis restart).
* The server accepts an acknowledgement from an earlier delivery of a job claimed again. The
  store makes that harmless: a worker runs an event only while it holds the event's lease in
  the store, and an event whose job was settled early stays unfinished there until the sweeper
  enqueues it again.

Connection failures are ``QueueUnavailable``; the client reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Awaitable
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from autorunner.clock import Clock, system_clock
from autorunner.errors import QueueUnavailable
from autorunner.queue.base import Job, QueueStats

T = TypeVar("T")
CONSUMER = "workers"
NOT_BEFORE = "Autorunner-Not-Before"
REASON = "Autorunner-Reason"
STORE_FAILED = 10077
"""JetStream's code for a refused store; "maximum messages per subject" among its reasons
means the job is already queued."""
GONE = {10059, 10014}
"""Stream not found, consumer not found."""
MIN_FETCH = 0.05
"""A claim that does not wait still asks the server once, for this long at most."""
_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,200}")


def subject_token(event_id: str) -> str:
    """A subject token for an event id: the id itself when it is plain, else its digest."""
    if _PLAIN.fullmatch(event_id):
        return f"i{event_id}"
    return "h" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def _name_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "autorunner"


class NatsQueue:
    """``Queue`` on JetStream; build it with ``await NatsQueue.open(url, lease=...)``."""

    def __init__(
        self, client: NatsClient, *, name: str, lease: float, clock: Clock = system_clock
    ) -> None:
        part = _name_part(name)
        self._nc = client
        self._js = client.jetstream()
        self._clock = clock
        self.lease = lease
        self.name = name
        self.stream = f"AUTORUNNER_{part.upper()}"
        self.dead_stream = f"{self.stream}_DEAD"
        self.jobs = f"autorunner.{part}.jobs"
        self.dead = f"autorunner.{part}.dead"
        self._claiming = asyncio.Lock()
        self._sub: nats.js.JetStreamContext.PullSubscription | None = None
        self._declared = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        lease: float,
        name: str = "autorunner",
        clock: Clock = system_clock,
        connect_timeout: float = 5.0,
    ) -> NatsQueue:
        """Connect, create or update the streams and the consumer; ``QueueUnavailable`` if the
        server cannot be reached or has no JetStream."""
        try:
            client = await nats.connect(
                url,
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise QueueUnavailable(f"cannot reach NATS at {url}: {exc}") from exc
        queue = cls(client, name=name, lease=lease, clock=clock)
        try:
            await queue._declare()
        except BaseException:
            await client.close()
            raise
        return queue

    async def _declare(self) -> None:
        jobs = StreamConfig(
            name=self.stream,
            subjects=[f"{self.jobs}.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
        )
        dead = StreamConfig(
            name=self.dead_stream,
            subjects=[f"{self.dead}.*"],
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
        )
        consumer = ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.lease,
            max_deliver=-1,
            filter_subject=f"{self.jobs}.*",
            max_ack_pending=-1,
        )
        for config in (jobs, dead):
            await self._call(self._js.add_stream(config))
        await self._call(self._js.add_consumer(self.stream, consumer))
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
        self._sub = await self._call(self._js.pull_subscribe_bind(CONSUMER, stream=self.stream))
        self._declared = True

    async def _call(self, step: Awaitable[T]) -> T:
        """``step``, or ``QueueUnavailable``: at once while the client is reconnecting (it would
        buffer the request and wait out its timeout: an ingress must answer now), and for any
        refusal. A refusal saying a stream or the consumer is gone (a server restarted without
        its data) makes the next call declare them again."""
        if not self._nc.is_connected:
            if asyncio.iscoroutine(step):
                step.close()
            raise QueueUnavailable("NATS queue unavailable (reconnecting)")
        try:
            return await step
        except nats.js.errors.APIError as exc:
            if exc.err_code in GONE:
                self._declared = False
            raise QueueUnavailable(f"NATS refused: {exc}") from exc
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError) as exc:
            # no stream listens on the subject
            self._declared = False
            raise QueueUnavailable(f"NATS queue unavailable: {exc!r}") from exc
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise QueueUnavailable(f"NATS queue unavailable: {exc!r}") from exc

    async def _ready(self) -> None:
        if not self._declared:
            await self._declare()

    async def enqueue(self, event_id: str, *, delay: float = 0.0) -> None:
        await self._ready()
        token = subject_token(event_id)
        headers = {NOT_BEFORE: repr(self._clock() + delay)} if delay > 0 else None
        # The job, and its dead letter gone (a redrive; nothing to purge is the usual case):
        # side by side, so a webhook waits one round trip, not two. Purging for a job already
        # queued purges nothing (a queued job has no dead letter).
        published, purged = await asyncio.gather(
            self._call(
                self._js.publish(f"{self.jobs}.{token}", event_id.encode(), headers=headers)
            ),
            self._call(self._js.purge_stream(self.dead_stream, subject=f"{self.dead}.{token}")),
            return_exceptions=True,
        )
        if isinstance(published, BaseException) and not (
            isinstance(published, QueueUnavailable) and _already_queued(published.__cause__)
        ):
            raise published
        if isinstance(purged, BaseException):
            raise purged

    async def claim(self, consumer: str, *, limit: int, lease: float, wait: float) -> list[Job]:
        async with self._claiming:
            await self._ready()
            assert self._sub is not None  # noqa: S101 - _declare binds it
            try:
                msgs = await self._call(self._sub.fetch(limit, timeout=max(wait, MIN_FETCH)))
            except QueueUnavailable as exc:
                if isinstance(exc.__cause__, TimeoutError) and self._nc.is_connected:
                    return []  # nothing arrived in time
                raise
        jobs: list[Job] = []
        now = self._clock()
        for msg in msgs:
            not_before = float((msg.headers or {}).get(NOT_BEFORE, 0.0))
            if not_before > now:
                await self._reply(msg.reply, _nak(not_before - now))
                continue
            jobs.append(
                Job(
                    event_id=msg.data.decode(),
                    deliveries=msg.metadata.num_delivered,
                    receipt=msg.reply,
                )
            )
        return jobs

    async def _reply(self, receipt: str, verb: bytes) -> None:
        """Settle a delivery by its ack subject, confirmed by the server."""
        await self._call(self._nc.request(receipt, verb, timeout=5.0))

    async def extend(self, jobs: list[Job], *, lease: float) -> None:
        for job in jobs:
            await self._reply(job.receipt, b"+WPI")

    async def ack(self, job: Job) -> None:
        await self._reply(job.receipt, b"+ACK")

    async def retry(self, job: Job, *, delay: float) -> None:
        await self._reply(job.receipt, _nak(delay))

    async def dead_letter(self, job: Job, *, reason: str) -> None:
        subject = f"{self.dead}.{subject_token(job.event_id)}"
        headers = {REASON: reason.replace("\r", " ").replace("\n", " ")[:512]}
        await self._call(self._js.publish(subject, job.event_id.encode(), headers=headers))
        await self._reply(job.receipt, b"+TERM")

    async def stats(self) -> QueueStats:
        info = await self._call(self._js.consumer_info(self.stream, CONSUMER))
        dead = await self._call(self._js.stream_info(self.dead_stream))
        pending = int(info.num_pending or 0)
        in_flight = int(info.num_ack_pending or 0)
        oldest = None
        if pending:
            delivered = info.delivered.stream_seq if info.delivered else 0
            try:
                first = await self._call(
                    self._js.get_msg(self.stream, seq=(delivered or 0) + 1, next=True)
                )
            except QueueUnavailable as exc:
                if not isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                    raise
                first = None
            if first is not None and first.time is not None:
                oldest = max(0.0, time.time() - first.time.timestamp())
        return QueueStats(
            depth=pending,
            ready=pending,
            in_flight=in_flight,
            dead=int(dead.state.messages),
            oldest_ready_age=oldest,
        )

    async def drop(self) -> None:
        """Delete both streams (tests, and decommissioning a queue name)."""
        for stream in (self.stream, self.dead_stream):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_stream(stream)

    async def close(self) -> None:
        await self._nc.close()


def _already_queued(error: BaseException | None) -> bool:
    return (
        isinstance(error, nats.js.errors.APIError)
        and error.err_code == STORE_FAILED
        and "per subject" in (error.description or "")
    )


def _nak(delay: float) -> bytes:
    return b'-NAK {"delay": %d}' % int(max(delay, 0.0) * 1_000_000_000)
