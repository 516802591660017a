"""The SQLite outbox (local mode): the store and the queue share one file, so each moment an
event crosses between them is one transaction — a transactional outbox.

``admit`` writes the event and its queue entry in one commit: one fsync acknowledges both, and
neither exists without the other. ``settle`` records the run, moves the event on and settles
its entry in one commit; when the worker no longer held the event, its job is settled by the
claim's receipt instead (a receipt another consumer has since replaced settles nothing).
"""

from __future__ import annotations

import sqlite3

from autorunner.clock import Clock, system_clock
from autorunner.events import Event
from autorunner.outbox import Admission, settle_job
from autorunner.queue.base import Job
from autorunner.queue.sqlite import SqliteQueue
from autorunner.records import RawDelivery, RunRecord
from autorunner.store.sql import finish_params
from autorunner.store.sqlite import SqliteStore


class SqliteOutbox:
    """``Outbox`` over a ``SqliteStore`` and a ``SqliteQueue`` on the same database."""

    def __init__(
        self, store: SqliteStore, queue: SqliteQueue, *, clock: Clock = system_clock
    ) -> None:
        if store.db is not queue.db:
            raise ValueError("the SQLite outbox needs the store and the queue in one database")
        self._store = store
        self._queue = queue
        self._clock = clock

    async def admit(self, event: Event, raw: RawDelivery) -> Admission:
        admission: Admission = await self._store.db.write_together(
            self._admit_many, (event, raw, self._clock())
        )
        return admission

    def _admit_many(
        self, conn: sqlite3.Connection, rows: list[tuple[Event, RawDelivery, float]]
    ) -> list[Admission]:
        """The admissions that meet in one group commit: their events in one statement, the
        queue entries of those inserted in another."""
        results = self._store.insert_many_in(conn, rows)
        self._queue.enqueue_many_in(
            conn,
            [
                (event.event_id, now)
                for (event, _, now), r in zip(rows, results, strict=True)
                if r.inserted
            ],
        )
        return [
            Admission(inserted=True, queued=True)
            if r.inserted
            else Admission(inserted=False, existing_id=r.existing_id)
            for r in results
        ]

    async def settle(
        self,
        job: Job,
        run: RunRecord,
        *,
        owner: str,
        retry_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        params = finish_params(
            run, owner=owner, now=self._clock(), retry_at=retry_at, reason=reason
        )

        def op(conn: sqlite3.Connection) -> bool:
            if not self._store.finish_in(conn, run, params):
                return False
            self._queue.settle_in(
                conn,
                run.event_id,
                outcome=run.outcome,
                at=params["retry_at"],
                reason=params["error"],
            )
            return True

        if not await self._store.db.write(op):
            await settle_job(
                self._queue, job, run, retry_at=retry_at, reason=reason, clock=self._clock
            )
