"""The SQLite queue (local mode): a ``jobs`` table in the store's file, claimed by visibility timeout.

Claiming is one ``UPDATE … RETURNING`` in the writer's transaction, so two consumers never get
the same delivery; every later call carries the claim's receipt, so a consumer whose lease ran
out cannot acknowledge or retry a job that another consumer has since claimed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3

from autorunner.clock import Clock, system_clock
from autorunner.queue.base import Job, QueueStats
from autorunner.records import Outcome
from autorunner.sqlitedb import SqliteDatabase

IDLE_POLL_SECONDS = 0.25
"""How often an idle consumer looks for jobs enqueued by another process."""
ENQUEUE_ROWS = 300
"""Rows per multi-row insert of queue entries (3 parameters each)."""


class SqliteQueue:
    """``Queue`` over a shared ``SqliteDatabase``."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        clock: Clock = system_clock,
        idle_poll: float = IDLE_POLL_SECONDS,
    ) -> None:
        self.db = db
        self._clock = clock
        self._idle_poll = idle_poll
        self._tokens = itertools.count(1)
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._notify_scheduled = False

    async def enqueue(self, event_id: str, *, delay: float = 0.0) -> None:
        now = self._clock()
        await self.db.write(
            lambda conn: self.enqueue_in(conn, event_id, now + delay, now=now, revive=True)
        )
        self.notify()

    def enqueue_in(
        self,
        conn: sqlite3.Connection,
        event_id: str,
        at: float,
        *,
        now: float | None = None,
        revive: bool = False,
    ) -> None:
        """Write the queue entry inside the caller's transaction (the store's outbox hook).

        ``revive`` also clears a dead-letter mark (a redrive); a brand-new event has none.
        """
        conn.execute(
            "INSERT INTO jobs (event_id, available_at, enqueued_at) VALUES (?, ?, ?)"
            " ON CONFLICT (event_id) DO UPDATE SET available_at = min(available_at, excluded.available_at)"
            " WHERE receipt IS NULL",
            (event_id, at, at if now is None else now),
        )
        if revive:
            conn.execute("DELETE FROM dead_jobs WHERE event_id = ?", (event_id,))
        self.notify_threadsafe()

    def enqueue_many_in(self, conn: sqlite3.Connection, entries: list[tuple[str, float]]) -> None:
        """``enqueue_in`` for brand-new events (none has an entry yet), each with its time, in
        one multi-row statement per ``ENQUEUE_ROWS`` (``executemany`` would run, and hand the
        GIL over, once per row)."""
        for start in range(0, len(entries), ENQUEUE_ROWS):
            part = entries[start : start + ENQUEUE_ROWS]
            conn.execute(
                "INSERT INTO jobs (event_id, available_at, enqueued_at) VALUES "
                + ", ".join(["(?, ?, ?)"] * len(part))
                + " ON CONFLICT (event_id) DO UPDATE SET"
                " available_at = min(available_at, excluded.available_at) WHERE receipt IS NULL",
                [value for event_id, at in part for value in (event_id, at, at)],
            )
        if entries:
            self.notify_threadsafe()

    def settle_in(
        self,
        conn: sqlite3.Connection,
        event_id: str,
        *,
        outcome: Outcome,
        at: float,
        reason: str | None,
    ) -> None:
        """Settle the entry inside the store's transaction that finished the event's run.

        No receipt is needed: the store has just proven this worker held the event's lease.
        """
        if outcome == "retry":
            conn.execute(
                "UPDATE jobs SET receipt = NULL, available_at = ? WHERE event_id = ?",
                (at, event_id),
            )
            return
        conn.execute("DELETE FROM jobs WHERE event_id = ?", (event_id,))
        if outcome == "dead":
            conn.execute(
                "INSERT OR REPLACE INTO dead_jobs (event_id, reason, dead_at) VALUES (?, ?, ?)",
                (event_id, reason or "", self._clock()),
            )

    def notify(self) -> None:
        """Wake consumers in this process waiting in ``claim`` (other processes poll)."""
        if self._wakeup is not None:
            self._wakeup.set()

    def notify_threadsafe(self) -> None:
        """``notify`` from another thread (the writer's); wake-ups already on their way coalesce."""
        loop = self._loop
        if loop is None or self._notify_scheduled:
            return
        self._notify_scheduled = True

        def wake() -> None:
            self._notify_scheduled = False
            self.notify()

        with contextlib.suppress(RuntimeError):  # loop closed
            loop.call_soon_threadsafe(wake)

    async def claim(self, consumer: str, *, limit: int, lease: float, wait: float) -> list[Job]:
        loop = self._loop = asyncio.get_running_loop()
        wakeup = self._wakeup = self._wakeup or asyncio.Event()
        deadline = loop.time() + wait
        while True:
            # Cleared before the look, never after: an entry written in the commit that found
            # nothing wakes the wait below even when its wake-up runs before this task learns
            # the look's answer (cleared after, it was lost, and the job waited for a poll).
            wakeup.clear()
            jobs = await self._take(consumer, limit, lease)
            remaining = deadline - loop.time()
            if jobs or remaining <= 0:
                return jobs
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=min(remaining, self._idle_poll))

    async def _take(self, consumer: str, limit: int, lease: float) -> list[Job]:
        now = self._clock()
        token = f"{consumer}/{next(self._tokens)}"
        rows = await self.db.write(
            lambda conn: conn.execute(
                "UPDATE jobs SET deliveries = deliveries + 1, receipt = ?, available_at = ?"
                " WHERE event_id IN (SELECT event_id FROM jobs WHERE available_at <= ?"
                " ORDER BY available_at LIMIT ?) RETURNING event_id, deliveries",
                (token, now + lease, now, limit),
            ).fetchall()
        )
        return [Job(event_id=r[0], deliveries=r[1], receipt=token) for r in rows]

    async def extend(self, jobs: list[Job], *, lease: float) -> None:
        until = self._clock() + lease
        await self.db.write(
            lambda conn: conn.executemany(
                "UPDATE jobs SET available_at = ? WHERE event_id = ? AND receipt = ?",
                [(until, j.event_id, j.receipt) for j in jobs],
            )
        )

    async def ack(self, job: Job) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "DELETE FROM jobs WHERE event_id = ? AND receipt = ?", (job.event_id, job.receipt)
            )
        )

    async def retry(self, job: Job, *, delay: float) -> None:
        at = self._clock() + delay
        await self.db.write(
            lambda conn: conn.execute(
                "UPDATE jobs SET receipt = NULL, available_at = ? WHERE event_id = ? AND receipt = ?",
                (at, job.event_id, job.receipt),
            )
        )

    async def dead_letter(self, job: Job, *, reason: str) -> None:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "DELETE FROM jobs WHERE event_id = ? AND receipt = ?", (job.event_id, job.receipt)
            )
            if cur.rowcount:
                conn.execute(
                    "INSERT OR REPLACE INTO dead_jobs (event_id, reason, dead_at) VALUES (?, ?, ?)",
                    (job.event_id, reason, now),
                )

        await self.db.write(op)

    async def stats(self) -> QueueStats:
        now = self._clock()

        def op(conn: sqlite3.Connection) -> QueueStats:
            total, ready, in_flight, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(available_at <= :now), 0),"
                " coalesce(sum(receipt IS NOT NULL AND available_at > :now), 0),"
                " min(CASE WHEN available_at <= :now THEN enqueued_at END) FROM jobs",
                {"now": now},
            ).fetchone()
            dead = conn.execute("SELECT count(*) FROM dead_jobs").fetchone()[0]
            return QueueStats(
                depth=total - in_flight,
                ready=ready,
                in_flight=in_flight,
                dead=dead,
                oldest_ready_age=None if oldest is None else now - oldest,
            )

        return await self.db.read(op)

    async def close(self) -> None:
        await self.db.close()
