"""Benchmark: worker throughput with the no-op ``notify`` action, on SQLite (local mode).

    .venv/bin/python -m bench.worker [--events 20000] [--concurrency 64] [--store sqlite|memory]

Preloads ``--events`` stored and queued events, then times one worker (one process, as in
``serve``) draining them end to end: claim, lease, decide, ledger intent, notify, ledger result,
run record, ack — every step durable (``synchronous=FULL``). The notify adapter's log line is
filtered out by ``LOG_LEVEL=warning``, which makes it a no-op. ``--store memory`` runs the same
worker over the in-memory twins (nothing durable): the floor of the pipeline's own Python cost.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from autorunner import logs
from autorunner.app import build_runtime
from autorunner.backends import Backends, open_backends
from autorunner.config import Settings
from autorunner.events import Event
from autorunner.records import RawDelivery
from autorunner.service_loop import run_service
from bench.calibrate import python_loop_seconds


async def preload(settings: Settings, count: int, *, concurrency: int = 500) -> None:
    """Store and queue ``count`` events through backends opened for it, closed afterwards."""
    backends = await open_backends(settings)
    try:
        await preload_into(backends, count, concurrency=concurrency)
    finally:
        await backends.close()


def bench_event(event_id: str) -> Event:
    """An event the default route answers with the no-op notify action."""
    return Event(
        event_id=event_id,
        channel="test",
        shape="canonical",
        event_type="query.triggered",
        title="BTC above 100k",
        body="bench",
    )


async def preload_into(backends: Backends, count: int, *, concurrency: int = 500) -> None:
    """Store and queue ``count`` events through ``backends``."""
    raw = RawDelivery(received_at=time.time(), headers={}, body="{}")

    async def one(n: int) -> None:
        await backends.outbox.admit(bench_event(f"bench-{n}"), raw)

    for start in range(0, count, concurrency):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + concurrency))))


async def drain(settings: Settings, count: int, *, preloaded: Backends | None = None) -> float:
    backends = preloaded or await open_backends(settings)
    runtime = build_runtime(settings, backends)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(runtime.worker.run(stop))
    while True:  # the queue empties as jobs are acked; cheaper to poll than counting events
        queued = await backends.queue.stats()
        if queued.depth == 0 and queued.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    done = (await backends.store.stats()).counts.get("done", 0)
    assert done == count, f"only {done} of {count} events finished"
    stop.set()
    await task
    await runtime.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    args = parser.parse_args()
    logs.configure(level="warning")
    db = Path(tempfile.mkdtemp(prefix="autorunner-bench-")) / "worker.db"
    settings = Settings(
        queue_url="memory://" if args.store == "memory" else f"sqlite:///{db}",
        worker_concurrency=args.concurrency,
        sqlite_synchronous=args.synchronous,
        log_level="warning",
    )
    if args.store == "memory":

        async def both() -> float:  # the in-memory twins forget everything when closed
            backends = await open_backends(settings)
            await preload_into(backends, args.events)
            return await drain(settings, args.events, preloaded=backends)

        elapsed = run_service(both())
    else:
        asyncio.run(preload(settings, args.events))
        elapsed = run_service(drain(settings, args.events))  # as `autorunner worker` runs
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    durability = "in memory" if args.store == "memory" else f"synchronous={args.synchronous}"
    yardstick = python_loop_seconds()
    print(
        f"{args.events:,} jobs in {elapsed:.2f}s = {args.events / elapsed:,.0f} jobs/s "
        f"(concurrency {args.concurrency}, {durability}, peak RSS {rss:.0f} MB; "
        f"CPU yardstick {yardstick:.2f}s)"
    )


if __name__ == "__main__":
    main()
