"""What each process counted, added to the store every few seconds, so the console's overview
shows what every process saw: deliveries refused by reason, and runs by outcome.

The counters are the process's own metrics (one count, two readers): each flush adds what
they gained since the last one to the store's tallies of the current minute, one write per
process per ``FLUSH_EVERY`` however many requests were refused (a flood of bad requests must
not become a flood of writes). A process killed loses at most its last ``FLUSH_EVERY`` of
counts; a store that does not answer keeps them for the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from prometheus_client import Counter

from autorunner.clock import Clock, system_clock
from autorunner.errors import Unavailable
from autorunner.metrics import Metrics
from autorunner.store.base import Journal

log = structlog.get_logger("autorunner.tallies")

FLUSH_EVERY = 10.0
"""Seconds between two flushes of one process."""


def counted(metrics: Metrics) -> dict[str, int]:
    """The counts the overview sums: ``refused:<reason>`` (webhook and stream deliveries, and
    clients the HTTP server refused) and ``runs:<outcome>``."""
    found: dict[str, int] = {}
    sources: tuple[tuple[Counter, str, str], ...] = (
        (metrics.rejected, "refused", "reason"),
        (metrics.http_refused, "refused", "reason"),
        (metrics.processed, "runs", "outcome"),
    )
    for counter, kind, label in sources:
        for family in counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    name = f"{kind}:{sample.labels[label]}"
                    found[name] = found.get(name, 0) + int(sample.value)
    return found


class Tallies:
    """One process's flushes of ``counted`` into ``Journal.add_tallies``."""

    def __init__(self, journal: Journal, metrics: Metrics, *, clock: Clock = system_clock):
        self._journal = journal
        self._metrics = metrics
        self._clock = clock
        self._flushed: dict[str, int] = {}
        self._flushed_at = float("-inf")

    async def flush(self) -> None:
        """Add what the counters gained since the last flush that reached the store."""
        now = counted(self._metrics)
        gained = {k: v - self._flushed.get(k, 0) for k, v in now.items()}
        gained = {k: v for k, v in gained.items() if v > 0}
        if not gained:
            return
        try:
            await self._journal.add_tallies(int(self._clock() // 60), gained)
        except Unavailable as exc:
            log.warning("tallies.not_flushed", error=str(exc))
            return
        self._flushed = now

    async def flush_due(self, *, every: float = FLUSH_EVERY) -> None:
        """Flush when ``every`` seconds passed since the last flush (for a process that cannot
        run a loop of its own: a Lambda function flushes after an invocation)."""
        now = time.monotonic()
        if now - self._flushed_at >= every:
            self._flushed_at = now
            await self.flush()

    async def run(self, stop: asyncio.Event, *, every: float = FLUSH_EVERY) -> None:
        """Flush every ``every`` seconds until ``stop``, and once more then."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if not stop.is_set():
                await self.flush()
        await self.flush()
