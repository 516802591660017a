"""Benchmark: the PostgreSQL store's hot statements alone, their client CPU per event or job.

    .venv/bin/python -m bench.store_steps [--events 4000] [--rounds 3]

A throw-away database on the machine's server. Each round stores ``--events`` events (256
admissions at once, as an ingress under load: the insert), then runs 64 jobs at once, each
doing a job's store steps in turn on its own event — lease, pinned decision with the effect's
intent (one statement), effect result, run record — with no queue, no pipeline and no HTTP
around them. Prints, per round and as medians, this process's CPU (``process_time``) and
PostgreSQL's (every server process's, from ``/proc``, as ``bench.cost_model``) per insert and per
job, and their rates: the cost of the statements and of their batching (``StatementBatch``),
which the worker and ingress benchmarks measure only among everything else. The machine must
be otherwise idle.

For a before/after, run it alternately on both trees in one sitting (this machine's speed
moves by up to 2x within minutes): ``PYTHONPATH=<other tree>/src .venv/bin/python -m ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from autorunner.records import EffectIntent, Pin, RawDelivery, RunRecord
from autorunner.service_loop import run_service
from autorunner.store.postgres import PostgresStore
from bench.calibrate import python_loop_seconds
from bench.cloud import fresh_database
from bench.cost_model import cpu_of
from bench.worker import bench_event

Costs = tuple[float, float, float, float, float, float]


async def one_round(url: str, events: int) -> Costs:
    """Per insert and per job, on a fresh store: our CPU µs, PostgreSQL's CPU µs, the rate."""
    store = await PostgresStore.open(url)
    try:
        ids = [f"e{n:07}" for n in range(events)]
        raw = RawDelivery(received_at=time.time(), headers={}, body="{}")
        admitting = asyncio.Semaphore(256)

        async def insert(event_id: str) -> None:
            async with admitting:
                await store.insert_event(bench_event(event_id), raw)

        cpu, server, wall = time.process_time(), cpu_of(("postgres",)), time.perf_counter()
        await asyncio.gather(*(insert(i) for i in ids))
        insert_cpu, insert_wall = time.process_time() - cpu, time.perf_counter() - wall
        insert_server = cpu_of(("postgres",)) - server

        todo = iter(ids)

        async def job_runner() -> None:
            for event_id in todo:
                await store.acquire(event_id, owner="w", lease=30)
                await store.begin_first_effect(
                    EffectIntent(
                        effect_key=f"{event_id}:notify",
                        event_id=event_id,
                        step_id="notify",
                        kind="notify",
                        params={"text": "hi"},
                    ),
                    Pin(decision={"actions": []}, owner="w", generation=1),
                )
                await store.finish_effect(f"{event_id}:notify", status="done", result={"ok": 1})
                run = RunRecord(
                    event_id=event_id, attempt=1, outcome="done", started_at=0.0, finished_at=1.0
                )
                await store.finish(run, owner="w")

        cpu, server, wall = time.process_time(), cpu_of(("postgres",)), time.perf_counter()
        await asyncio.gather(*(job_runner() for _ in range(64)))
        job_cpu, job_wall = time.process_time() - cpu, time.perf_counter() - wall
        job_server = cpu_of(("postgres",)) - server
    finally:
        await store.close()
    return (
        insert_cpu / events * 1e6,
        insert_server / events * 1e6,
        events / insert_wall,
        job_cpu / events * 1e6,
        job_server / events * 1e6,
        events / job_wall,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(f"CPU yardstick {python_loop_seconds():.2f}s; {args.events:,} events a round")
    line = "insert {:.0f} + {:.0f} µs CPU ({:,.0f}/s); job {:.0f} + {:.0f} µs CPU ({:,.0f}/s)"
    rounds: list[Costs] = []
    for _ in range(args.rounds):
        with fresh_database(args.database) as url:
            rounds.append(run_service(one_round(url, args.events)))
        print("  " + line.format(*rounds[-1]))
    medians = [statistics.median(costs) for costs in zip(*rounds, strict=True)]
    print("median (ours + PostgreSQL's): " + line.format(*medians))


if __name__ == "__main__":
    main()
