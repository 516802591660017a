"""Benchmark: where a cloud job's CPU goes — the worker, PostgreSQL and Redis — for a cost model.

    .venv/bin/python -m bench.cost_model [--events 5000] [--rounds 2]
        [--database postgresql://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/0]

Preloads ``--events`` stored and queued no-op jobs (as ``bench.queues``), then drains them with
one worker in this process (run as ``autorunner worker`` runs: ``service_loop``) and reads,
around the drain only, the CPU time of this process (``getrusage``), of every PostgreSQL server
process and of the Redis server (``/proc/<pid>/stat``, Linux): CPU milliseconds per job in each.
PostgreSQL's figure includes its background processes (WAL writer, checkpointer) over the
drain; the machine must be otherwise idle. Its work is also counted in units this machine's
speed does not move: the table rows PostgreSQL read (sequential and by index) and the buffers it
touched per job, from its statistics of the drain's database — including the drain's last status
count (every event read once: one row a job), autovacuum's work and each new session's start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from pathlib import Path

import psycopg

from autorunner import logs
from autorunner.config import Settings
from autorunner.service_loop import run_service
from bench.calibrate import python_loop_seconds
from bench.queues import database
from bench.redis_keys import fresh_queue
from bench.worker import drain, preload

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(names: tuple[str, ...]) -> float:
    """CPU seconds (user + system) of every process whose command name starts with one of
    ``names``, with their reaped children's (a PostgreSQL backend that ended meanwhile is
    counted in the postmaster's)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        if command.startswith(names):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / TICKS


def database_work(url: str) -> tuple[int, int]:
    """Rows read from the database's tables (sequentially and by index) and buffers touched so
    far, once every other session on it has ended (a session's counts arrive as it ends)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                print("(sessions still open on the database after 10 s: its counts may be short)")
                break
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        counts = conn.execute(
            "SELECT (SELECT sum(seq_tup_read + coalesce(idx_tup_fetch, 0))::bigint"
            " FROM pg_stat_user_tables), blks_hit + blks_read"
            " FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert counts is not None
    return int(counts[0] or 0), int(counts[1])


def one_round(events: int, admin: str, redis: str) -> dict[str, float]:
    with database(admin) as db, fresh_queue(redis) as queue:
        settings = Settings(
            runner_mode="cloud",
            database_url=db,
            queue_url=redis,
            queue_name=queue,
            worker_concurrency=64,
            log_level="warning",
        )
        asyncio.run(preload(settings, events))
        read, touched = database_work(db)
        before = resource.getrusage(resource.RUSAGE_SELF)
        postgres, redis_cpu = cpu_of(("postgres",)), cpu_of(("redis-server",))
        elapsed = run_service(drain(settings, events))
        after = resource.getrusage(resource.RUSAGE_SELF)
        postgres, redis_cpu = (
            cpu_of(("postgres",)) - postgres,
            cpu_of(("redis-server",)) - redis_cpu,
        )
        read_after, touched_after = database_work(db)
        read, touched = read_after - read, touched_after - touched
    worker = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "jobs/s": events / elapsed,
        "worker": worker * 1000 / events,
        "postgres": postgres * 1000 / events,
        "redis": redis_cpu * 1000 / events,
        "rows read": read / events,
        "buffers": touched / events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    logs.configure(level="warning", fmt="json")
    print(f"CPU yardstick {python_loop_seconds():.2f}s; one worker, concurrency 64, no-op jobs")
    rounds = [one_round(args.events, args.database, args.redis) for _ in range(args.rounds)]
    for key in ("jobs/s", "worker", "postgres", "redis", "rows read", "buffers"):
        values = [r[key] for r in rounds]
        unit = {"jobs/s": "", "rows read": "/job", "buffers": "/job"}.get(key, " CPU ms/job")
        shown = ", ".join(f"{v:,.2f}" for v in values)
        print(f"{key:>9}{unit}: median {statistics.median(values):,.2f} ({shown})")


if __name__ == "__main__":
    main()
