"""Benchmark: worker throughput per process on each cloud queue, with the no-op ``notify`` action.

    .venv/bin/python -m bench.queues [--events 5000] [--sqs-events 2000] [--rounds 3]
        [--queues redis,nats,sqs] [--database postgresql://postgres@127.0.0.1:5432/postgres]

One PostgreSQL store (a throw-away database on the machine's server) and, in turn, Redis Streams
(the machine's server, a fresh queue name), NATS JetStream (a private ``nats-server`` with file
storage) and SQS (moto's server, in memory). Each round preloads stored and queued events, then
times one worker process draining them (as ``bench.worker``). moto is a Python stand-in for SQS
on the same two cores: its figure is our overhead plus moto's, not what AWS would give.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import uuid
from collections.abc import Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict
from tests.services import MotoSqs, PrivateNats

from autorunner import logs
from autorunner.config import Settings
from autorunner.service_loop import run_service
from bench.calibrate import python_loop_seconds
from bench.redis_keys import fresh_queue
from bench.worker import drain, preload


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


@contextlib.contextmanager
def queue_url(kind: str, redis: str) -> Iterator[str]:
    if kind == "redis":
        yield redis
        return
    server = PrivateNats() if kind == "nats" else MotoSqs()
    server.start()
    try:
        if isinstance(server, MotoSqs):
            os.environ.update(server.environment)
            yield server.create_queue(f"bench-{uuid.uuid4().hex[:8]}")
        else:
            yield server.url
    finally:
        server.close()


def one_round(
    kind: str, events: int, concurrency: int, admin: str, redis: str
) -> tuple[float, float]:
    """Jobs per second, and the worker process's CPU milliseconds per job."""
    with (
        database(admin) as db,
        queue_url(kind, redis) as url,
        fresh_queue(redis if kind == "redis" else None) as name,
    ):
        settings = Settings(
            runner_mode="cloud",
            database_url=db,
            queue_url=url,
            queue_name=name,
            worker_concurrency=concurrency,
            log_level="warning",
            aws_region=MotoSqs.REGION if kind == "sqs" else None,
        )
        # moto answers slowly to many sends at once: fewer at a time, none timed out
        asyncio.run(preload(settings, events, concurrency=16 if kind == "sqs" else 500))
        before = resource.getrusage(resource.RUSAGE_SELF)
        elapsed = run_service(drain(settings, events))  # as `autorunner worker` runs
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return events / elapsed, cpu * 1000 / events


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--sqs-events", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--queues", default="redis,nats,sqs")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    logs.configure(level="warning")
    conninfo_to_dict(args.database)  # a bad URL fails here, before any server starts
    kinds = args.queues.split(",")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):  # the queues alternate within each round
        for kind in kinds:
            events = args.sqs_events if kind == "sqs" else args.events
            rate, per_job = one_round(kind, events, args.concurrency, args.database, args.redis)
            rates[kind].append(rate)
            cpu[kind].append(per_job)
    print(f"CPU yardstick {python_loop_seconds():.2f}s; concurrency {args.concurrency}")
    for kind, got in rates.items():
        shown = ", ".join(f"{rate:,.0f}" for rate in got)
        print(
            f"{kind:6} median {statistics.median(got):,.0f} jobs/s ({shown}); worker CPU"
            f" {statistics.median(cpu[kind]):.2f} ms/job"
        )


if __name__ == "__main__":
    main()
