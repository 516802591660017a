"""The worker: claim → lease in the store → pipeline → ack | retry | dead letter.

Up to ``concurrency`` jobs run at once. A heartbeat extends the queue and store leases of running
jobs, so a long job is never taken over while its worker lives, and a dead worker's jobs come
back when its leases lapse. ``run`` returns after ``stop`` is set: it claims nothing more, lets
running jobs finish for ``grace`` seconds, then cancels the rest and gives their leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import structlog

from autorunner import retry
from autorunner.clock import Clock, sleep_unless, system_clock
from autorunner.errors import PermanentError, TransientError, Unavailable
from autorunner.human_log import run_fields
from autorunner.metrics import Metrics
from autorunner.outbox import Outbox
from autorunner.pipeline import Attempt, Pipeline
from autorunner.queue.base import Job, Queue
from autorunner.records import Leased, WorkerBeat
from autorunner.store.base import Events, Journal
from autorunner.tracing import OFF, Tracing, Value

log = structlog.get_logger("autorunner.worker")

Outcome = Literal["done", "retry", "dead", "held", "skipped", "failed", "awaiting"]
"""How one delivery of a job ended (``Worker.run_batch``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerConfig:
    """How one worker runs."""

    name: str
    concurrency: int = 16
    lease: float = 30.0
    claim_wait: float = 1.0
    grace: float = 10.0
    retry: retry.RetryPolicy = field(default_factory=retry.RetryPolicy)
    unavailable_backoff: float = 1.0
    role: str = "worker"
    """What the process runs (``serve`` or ``worker``), as ``status`` lists it."""
    pause_poll: float = 1.0
    """While paused: how often to look whether the runner was resumed (and how long a job
    held by the pause waits before it is claimable again)."""


class Worker:
    """Runs jobs from a queue through a pipeline."""

    def __init__(
        self,
        *,
        store: Events,
        journal: Journal,
        queue: Queue,
        outbox: Outbox,
        pipeline: Pipeline,
        config: WorkerConfig,
        metrics: Metrics,
        clock: Clock = system_clock,
        rand: Callable[[], float] = random.random,
        tracing: Tracing = OFF,
    ) -> None:
        self._tracing = tracing
        self._store = store
        self._journal = journal
        self._queue = queue
        self._outbox = outbox
        self._pipeline = pipeline
        self.config = config
        self._metrics = metrics
        self._clock = clock
        self._rand = rand
        self._running: dict[asyncio.Task[str], tuple[Job, Leased | None]] = {}
        self.last_heartbeat: float | None = None
        self._paused = False
        self._started = self._clock()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then shut down gracefully."""
        self._started = self._clock()
        await self._beat()
        heartbeat = asyncio.create_task(self._heartbeat(), name="worker-heartbeat")
        try:
            await self._claim_loop(stop)
        finally:
            await self._drain()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Unavailable):
                await self._journal.forget_worker(self.config.name)

    async def _beat(self) -> None:
        """Tell the store this worker lives (``autorunner status`` lists it)."""
        beat = WorkerBeat(
            name=self.config.name,
            role=self.config.role,
            started_at=self._started,
            heartbeat_at=self._clock(),
            in_flight=len(self._running),
        )
        try:
            await self._journal.beat(beat)
        except Unavailable as exc:
            log.warning("worker.heartbeat_failed", backend="store", error=str(exc))

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        cfg = self.config
        while not stop.is_set():
            self.last_heartbeat = self._clock()
            free = cfg.concurrency - len(self._running)
            if free <= 0:
                await asyncio.wait(list(self._running), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                if await self._paused_now():
                    # Paused: events wait in the queue, untouched, until ``resume``.
                    await sleep_unless(stop, cfg.pause_poll)
                    continue
                jobs = await self._queue.claim(
                    cfg.name, limit=free, lease=cfg.lease, wait=cfg.claim_wait
                )
            except Unavailable as exc:
                log.warning("worker.queue_unavailable", error=str(exc))
                await sleep_unless(stop, cfg.unavailable_backoff)
                continue
            for job in jobs:
                task = asyncio.create_task(self._handle(job), name=f"job-{job.event_id}")
                self._running[task] = (job, None)
                task.add_done_callback(self._forget)

    async def _paused_now(self) -> bool:
        """Whether the kill switch is on; logs each change once."""
        reason = await self._pipeline.paused()
        if (reason is not None) != self._paused:
            self._paused = reason is not None
            if self._paused:
                log.warning("worker.paused", reason=reason)
            else:
                log.info("worker.resumed")
        return self._paused

    async def run_batch(self, jobs: list[Job], *, paused_delay: float) -> list[Outcome]:
        """Run jobs another party delivered (an SQS-triggered function's batch), at most
        ``concurrency`` at a time, with the heartbeat keeping their leases; each job's outcome,
        in order. ``skipped``: finished already, or running under another worker's lease;
        ``failed``: the store did not answer, or a bug — the job is to be delivered again.
        While the kill switch is on nothing runs: every job is ``held``, back in
        ``paused_delay`` seconds."""
        if await self._paused_now():
            for job in jobs:
                with contextlib.suppress(Unavailable):
                    await self._queue.retry(job, delay=paused_delay)
            return ["held"] * len(jobs)
        await self._beat()
        heartbeat = asyncio.create_task(self._heartbeat(), name="worker-heartbeat")
        slots = asyncio.Semaphore(self.config.concurrency)

        async def one(job: Job) -> Outcome:
            async with slots:
                task = asyncio.create_task(self._handle(job), name=f"job-{job.event_id}")
                self._running[task] = (job, None)
                task.add_done_callback(self._forget)
                return await task

        try:
            return list(await asyncio.gather(*(one(job) for job in jobs)))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _forget(self, task: asyncio.Task[Outcome]) -> None:
        self._running.pop(task, None)

    async def _handle(self, job: Job) -> Outcome:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        leased: Leased | None = None
        try:
            claimed = self._clock()
            leased = await self._store.acquire(
                job.event_id, owner=self.config.name, lease=self.config.lease
            )
            if leased is None:
                # Finished, dead, or running under another worker's live lease: nothing to do here.
                await self._queue.ack(job)
                return "skipped"
            self._running[task] = (job, leased)
            return await self._attempt(job, leased, claimed)
        except Unavailable as exc:
            # The job stays claimed; its lease lapses and it is delivered again.
            log.warning("worker.store_unavailable", event_id=job.event_id, error=str(exc))
        except asyncio.CancelledError:
            if leased is not None:
                await self._give_back(job, leased)
            raise
        except Exception:  # a bug: the lease lapses and the job is delivered again
            log.exception("worker.job_crashed", event_id=job.event_id)
        return "failed"

    async def _attempt(self, job: Job, leased: Leased, claimed: float) -> Outcome:
        """Run and settle one attempt, in the event's trace (``tracing``)."""
        parent = leased.event.traceparent
        if leased.available_at is not None:
            self._tracing.record(
                "queue wait", parent=parent, start=leased.available_at, end=claimed
            )
        attributes: dict[str, Value] = (
            {
                "autorunner.event_id": job.event_id,
                "autorunner.attempt": leased.attempt,
                "autorunner.generation": leased.generation,
                "autorunner.worker": self.config.name,
                "messaging.message.delivery_count": job.deliveries,
            }
            if self._tracing.enabled
            else {}
        )
        with self._tracing.span(
            "attempt", attributes, kind="consumer", parent=parent, start=claimed
        ) as span:
            with self._metrics.job_seconds.time():
                attempt = await self._pipeline.run(leased)
            with self._tracing.span("settle") as settling:
                outcome = await self._settle(job, leased, attempt)
                settling.set({"autorunner.outcome": outcome})
            span.set({"autorunner.outcome": outcome, "autorunner.route": attempt.record.route})
            if attempt.error is not None:
                span.fail(str(attempt.error))
        return outcome

    async def _settle(self, job: Job, leased: Leased, attempt: Attempt) -> Outcome:
        """Ack, retry, hold or dead-letter ``job`` as ``attempt`` ended; returns which."""
        event_id = job.event_id
        self._metrics.observe_run(attempt.record)
        if attempt.held is not None:
            # Paused before an effect: not an attempt; the event waits for ``resume``.
            await self._give_back(job, leased, delay=self.config.pause_poll)
            self._metrics.processed.labels("held").inc()
            log.info(
                "job.held",
                event_id=event_id,
                reason=attempt.held,
                **run_fields(leased.event, attempt.record),
            )
            return "held"
        if attempt.awaiting is not None:
            # A person's answer is asked for: not an attempt; the answer brings the event back.
            record = replace(attempt.record, outcome="awaiting")
            await self._outbox.settle(job, record, owner=leased.owner)
            self._metrics.processed.labels("awaiting").inc()
            log.info(
                "job.awaiting_approval",
                event_id=event_id,
                approval=attempt.awaiting,
                **run_fields(leased.event, attempt.record),
            )
            return "awaiting"
        if attempt.error is None:
            await self._outbox.settle(job, attempt.record, owner=leased.owner)
            self._metrics.processed.labels("done").inc()
            log.info(
                "job.done",
                event_id=event_id,
                attempt=leased.attempt,
                **run_fields(leased.event, attempt.record),
            )
            return "done"
        policy = replace(self.config.retry, max_attempts=attempt.max_attempts)
        ruling = retry.after_failure(
            policy,
            attempt=leased.attempt,
            error=str(attempt.error),
            permanent=isinstance(attempt.error, PermanentError),
            retry_after=attempt.error.retry_after
            if isinstance(attempt.error, TransientError)
            else None,
            rand=self._rand,
        )
        if isinstance(ruling, retry.Retry):
            record = replace(attempt.record, outcome="retry", retry_delay=round(ruling.delay, 6))
            retry_at = self._clock() + ruling.delay
            await self._outbox.settle(job, record, owner=leased.owner, retry_at=retry_at)
            self._metrics.retried.inc()
            self._metrics.processed.labels("retry").inc()
            log.warning(
                "job.retry",
                event_id=event_id,
                attempt=leased.attempt,
                delay=round(ruling.delay, 3),
                error=attempt.record.error,
                **run_fields(leased.event, attempt.record),
            )
            return "retry"
        record = replace(attempt.record, outcome="dead")
        await self._outbox.settle(job, record, owner=leased.owner, reason=ruling.reason)
        self._metrics.dead_lettered.inc()
        self._metrics.processed.labels("dead").inc()
        log.error(
            "job.dead_letter",
            event_id=event_id,
            attempt=leased.attempt,
            reason=ruling.reason,
            **run_fields(leased.event, attempt.record),
        )
        return "dead"

    async def _give_back(self, job: Job, leased: Leased, *, delay: float = 0.0) -> None:
        with contextlib.suppress(Unavailable):
            await self._store.release(job.event_id, owner=leased.owner)
            await self._queue.retry(job, delay=delay)
            log.info("job.released", event_id=job.event_id)

    async def _heartbeat(self) -> None:
        interval = max(self.config.lease / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            self.last_heartbeat = self._clock()
            await self._beat()
            held = list(self._running.values())
            if not held:
                continue
            # Each lease on its own: the store's lease is what keeps another worker from
            # running the event, so a queue outage must not stop it from being extended.
            try:
                await self._store.extend(
                    [job.event_id for job, leased in held if leased is not None],
                    owner=self.config.name,
                    lease=self.config.lease,
                )
            except Unavailable as exc:
                log.warning("worker.heartbeat_failed", backend="store", error=str(exc))
            # Read again: a job settled meanwhile (a retry's delay set) must not be extended.
            still = [job for job, _ in self._running.values()]
            try:
                await self._queue.extend(still, lease=self.config.lease)
            except Unavailable as exc:
                log.warning("worker.heartbeat_failed", backend="queue", error=str(exc))

    async def _drain(self) -> None:
        if not self._running:
            return
        tasks = list(self._running)
        log.info("worker.draining", in_flight=len(tasks), grace=self.config.grace)
        _, pending = await asyncio.wait(tasks, timeout=self.config.grace)
        # Past the grace no request may leave; one already in flight finishes (cancelling it
        # would leave its effect unknown), the rest are cancelled and their leases given back.
        self._pipeline.close()
        for task in pending:
            if not self._pipeline.is_sending(task):
                task.cancel()
        if pending:
            await asyncio.wait(pending)
