"""A bulk redrive run in the background of the console process, one dead letter at a time
through ``operations.redrive`` (each moved, journaled and queued as the CLI does it), so a page
can show its progress and a large one never holds a request open."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import structlog

from autorunner import operations
from autorunner.backends import Backends
from autorunner.errors import OperationRefused, Unavailable

log = structlog.get_logger("autorunner.console")

BULK_MAX = 100_000
"""Most dead letters one bulk redrive takes (what a filter matches beyond it waits for the
next)."""
KEPT = 20
"""Finished bulk redrives remembered for their progress pages."""

_numbers = itertools.count(1)


@dataclass
class BulkRedrive:
    """One bulk redrive's progress: ``redriven`` + ``skipped`` of ``total`` so far."""

    number: int
    total: int
    by: str
    redriven: int = 0
    skipped: int = 0
    """Not dead any more when their turn came (redriven by someone else meanwhile)."""
    stopped: str | None = None
    """Why it stopped before the end (the store or the queue not answering)."""
    finished: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def done(self) -> int:
        return self.redriven + self.skipped

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else self.done * 100 // self.total


class BulkRedrives:
    """The bulk redrives of one console process: at most one running at a time."""

    def __init__(self) -> None:
        self._runs: dict[int, BulkRedrive] = {}

    def get(self, number: int) -> BulkRedrive | None:
        return self._runs.get(number)

    def running(self) -> BulkRedrive | None:
        return next((r for r in self._runs.values() if not r.finished), None)

    def start(self, backends: Backends, ids: list[str], *, by: str) -> BulkRedrive:
        """Redrive ``ids`` in the background; the caller checked that none is running."""
        run = BulkRedrive(number=next(_numbers), total=len(ids), by=by)
        run.task = asyncio.create_task(_redrive(backends, ids, run), name=f"redrive-{run.number}")
        self._runs[run.number] = run
        for old in sorted(self._runs)[:-KEPT]:
            if self._runs[old].finished:
                del self._runs[old]
        return run


async def _redrive(backends: Backends, ids: list[str], run: BulkRedrive) -> None:
    log.info("console.bulk_redrive", number=run.number, total=run.total, who=run.by)
    try:
        for event_id in ids:
            try:
                await operations.redrive(backends, event_id, by=run.by)
            except OperationRefused:
                run.skipped += 1
            else:
                run.redriven += 1
    except Unavailable as exc:
        run.stopped = str(exc)
        log.warning("console.bulk_redrive_stopped", number=run.number, error=run.stopped)
    except Exception as exc:
        run.stopped = f"{type(exc).__name__}: {exc}"
        log.exception("console.bulk_redrive_failed", number=run.number)
    finally:
        run.finished = True
    log.info("console.bulk_redrive_done", number=run.number, redriven=run.redriven)
