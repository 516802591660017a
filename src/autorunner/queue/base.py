"""The ``Queue`` seam: at-least-once delivery of event ids to workers.

The queue is a delivery mechanism, not the source of truth: the store decides whether a job's
event still needs running (a worker leases the event in the store before running it), and the
sweeper re-enqueues stored events that a queue lost. So ``enqueue`` of an id already queued is
harmless, and a job may be delivered more than once.

A claimed job is invisible to other consumers until its lease passes; ``extend`` keeps a
running job's lease alive, ``retry`` makes it visible again after a delay, ``ack`` and
``dead_letter`` remove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One delivery of an event id; ``deliveries`` counts how often this job was claimed."""

    event_id: str
    deliveries: int
    receipt: str


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    """``depth`` = waiting (ready or delayed); ``in_flight`` = claimed and leased."""

    depth: int
    ready: int
    in_flight: int
    dead: int
    oldest_ready_age: float | None


class Queue(Protocol):
    """Every method raises ``Unavailable`` when the backend cannot answer."""

    async def enqueue(self, event_id: str, *, delay: float = 0.0) -> None:
        """Make a job for ``event_id`` visible after ``delay`` seconds (idempotent per id)."""

    async def claim(self, consumer: str, *, limit: int, lease: float, wait: float) -> list[Job]:
        """Take up to ``limit`` visible jobs, waiting up to ``wait`` seconds for the first."""

    async def extend(self, jobs: list[Job], *, lease: float) -> None:
        """Keep claimed jobs invisible for ``lease`` more seconds."""

    async def ack(self, job: Job) -> None:
        """The job is finished; remove it."""

    async def retry(self, job: Job, *, delay: float) -> None:
        """Make the job visible again after ``delay`` seconds."""

    async def dead_letter(self, job: Job, *, reason: str) -> None:
        """Remove the job from delivery and keep it as dead."""

    async def stats(self) -> QueueStats:
        """Depth and lag, for ``status``, ``/readyz`` and metrics."""

    async def close(self) -> None:
        """Release connections."""
