"""Benchmark: cloud mode (PostgreSQL store, Redis Streams queue) on the machine's services.

    .venv/bin/python -m bench.cloud [--duration 10] [--events 20000]
        [--database postgresql://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/0]

Creates a throw-away database and queue name, then:
1. the bare endpoint (``bench/hello.py``) under wrk — the ceiling, same run;
2. ``autorunner ingress`` (one process, then two side by side, each under its own wrk):
   verify, insert into PostgreSQL, XADD to Redis, 202;
3. open loop at half of one ingress's maximum, for p50/p99 acknowledgement latency;
4. ``--events`` stored and queued events drained by 1, 2 and 4 ``autorunner worker`` processes
   with the no-op ``notify`` action, timed from when every worker listens to the last ``done``.
Needs ``wrk`` (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from autorunner.config import Settings
from bench import loadgen
from bench.calibrate import python_loop_seconds
from bench.ingest import (
    SECRET,
    VENV_BIN,
    free_port,
    hello_command,
    raw_request,
    rss_mb,
    server,
    signed_lines,
    wrk,
)
from bench.redis_keys import fresh_queue
from bench.worker import preload


def cloud_env(database: str, redis: str, queue: str, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "RUNNER_MODE": "cloud",
        "DATABASE_URL": database,
        "QUEUE_URL": redis,
        "QUEUE_NAME": queue,
        "AUTO_SECRET": SECRET,
        "PORT": str(port),
        "LOG_FORMAT": "json",
        **extra,
    }


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database on the server of ``admin_url`` (its URL), dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"  # a URL, as DATABASE_URL must be
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


def count_done(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE status = 'done'").fetchone()
    return int(row[0]) if row else 0


def drain_with(workers: int, events: int, admin_url: str, redis: str, log_level: str) -> float:
    """Preload ``events``, start ``workers`` processes, return jobs/s once all are done."""
    with fresh_database(admin_url) as database, fresh_queue(redis) as queue:
        settings = Settings(
            runner_mode="cloud", queue_url=redis, database_url=database, queue_name=queue
        )
        asyncio.run(preload(settings, events))
        cmd = [str(VENV_BIN / "autorunner"), "worker"]
        with contextlib.ExitStack() as processes:
            for port in [free_port() for _ in range(workers)]:
                env = cloud_env(database, redis, queue, port, LOG_LEVEL=log_level)
                processes.enter_context(server(cmd, port, env))
            started, done_at_start = time.perf_counter(), count_done(database)
            if done_at_start > events // 2:
                raise SystemExit(
                    f"bench.cloud: {done_at_start} of {events} jobs were done before every worker "
                    "listened; use more --events"
                )
            while (done := count_done(database)) < events:
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
    return (done - done_at_start) / elapsed


def two_ingresses(
    args: argparse.Namespace, database: str, lines_file: Path, tmp: Path
) -> dict[str, float]:
    """Two ingress processes, each under its own wrk with half the connections and requests."""
    ingress = [str(VENV_BIN / "autorunner"), "ingress"]
    ports = [free_port(), free_port()]
    with concurrent.futures.ThreadPoolExecutor(2) as pool, fresh_queue(args.redis) as queue:
        envs = [cloud_env(database, args.redis, queue, p, LOG_LEVEL=args.log_level) for p in ports]
        with server(ingress, ports[0], envs[0]), server(ingress, ports[1], envs[1]):
            halves = [tmp / "a.tsv", tmp / "b.tsv"]
            lines = lines_file.read_text().splitlines(keepends=True)
            halves[0].write_text("".join(lines[: len(lines) // 2]))
            halves[1].write_text("".join(lines[len(lines) // 2 :]))
            both = list(
                pool.map(
                    lambda pair: wrk(pair[0], pair[1], args.duration, args.connections // 2),
                    zip(ports, halves, strict=True),
                )
            )
    return {
        "rate": sum(f["rate"] for f in both),
        "p50": max(f["p50"] for f in both),
        "p99": max(f["p99"] for f in both),
        "non2xx": sum(f["non2xx"] for f in both),
        "rss_mb": 0.0,
    }


def measure_ingress(
    args: argparse.Namespace,
    database: str,
    lines_file: Path,
    tmp: Path,
    results: dict[str, dict[str, float]],
) -> loadgen.Result:
    """One ingress and two under wrk (into ``results``), then the open loop at half the rate."""
    ingress = [str(VENV_BIN / "autorunner"), "ingress"]
    port = free_port()
    with fresh_queue(args.redis) as queue:
        env = cloud_env(database, args.redis, queue, port)
        with server(ingress, port, {**env, "LOG_LEVEL": args.log_level}) as proc:
            one = wrk(port, lines_file, args.duration, args.connections)
            results["cloud ingress, 1 process"] = {**one, "rss_mb": rss_mb(proc.pid)}

    results["cloud ingress, 2 processes"] = two_ingresses(args, database, lines_file, tmp)

    half = results["cloud ingress, 1 process"]["rate"] / 2
    port = free_port()
    fresh = signed_lines(int(half * args.duration))
    with fresh_queue(args.redis) as queue:
        env = cloud_env(database, args.redis, queue, port)
        with server(ingress, port, {**env, "LOG_LEVEL": args.log_level}):
            requests = [raw_request(r, port) for r in fresh]
            return asyncio.run(loadgen.run("127.0.0.1", port, requests, rate=half, connections=32))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="info", help="LOG_LEVEL of the processes")
    parser.add_argument("--workers-only", action="store_true", help="skip the ingest part")
    args = parser.parse_args()
    if args.workers_only:
        print_scale(args.events, scale_out(args))
        return
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-bench-"))
    lines_file = tmp / "signed.tsv"
    rows = signed_lines(400_000)
    lines_file.write_text("".join(f"{a}\t{b}\t{c}\t{d.decode()}\n" for a, b, c, d in rows))
    results: dict[str, dict[str, float]] = {}

    port = free_port()
    with server(hello_command(port), port, dict(os.environ)) as proc:
        results["bare hello endpoint"] = wrk(port, lines_file, args.duration, args.connections)
        results["bare hello endpoint"]["rss_mb"] = rss_mb(proc.pid)

    with fresh_database(args.database) as database:
        open_loop = measure_ingress(args, database, lines_file, tmp, results)

    scale = scale_out(args)

    ceiling = results["bare hello endpoint"]["rate"]
    print(
        f"\nmachine: {os.cpu_count()} cores; wrk -t2 -c{args.connections} -d{args.duration}s on the "
        f"same machine; PostgreSQL {conninfo_to_dict(args.database).get('host')}, Redis "
        f"{args.redis}; LOG_LEVEL={args.log_level}; CPU yardstick {python_loop_seconds():.2f}s\n"
    )
    print("| endpoint | req/s | x bare | p50 ms | p99 ms | non-2xx | RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, f in results.items():
        print(
            f"| {name} | {f['rate']:,.0f} | {f['rate'] / ceiling:.2f} | {f['p50']:.2f} "
            f"| {f['p99']:.2f} | {f['non2xx']:.0f} | {f['rss_mb']:.0f} |"
        )
    print(
        f"\nopen loop at {results['cloud ingress, 1 process']['rate'] / 2:,.0f} req/s (half of "
        f"one ingress's maximum) for "
        f"{open_loop.elapsed:.1f}s: sent {open_loop.sent:,}, statuses {open_loop.statuses}, "
        f"p50 {open_loop.percentile(50):.2f} ms, p99 {open_loop.percentile(99):.2f} ms"
    )
    print_scale(args.events, scale)


def scale_out(args: argparse.Namespace) -> dict[int, float]:
    return {n: drain_with(n, args.events, args.database, args.redis, "warning") for n in (1, 2, 4)}


def print_scale(events: int, scale: dict[int, float]) -> None:
    print(
        f"\nworkers draining {events:,} no-op jobs (LOG_LEVEL=warning; "
        f"CPU yardstick {python_loop_seconds():.2f}s):"
    )
    for n, rate in scale.items():
        print(f"  {n} worker process(es): {rate:,.0f} jobs/s ({rate / n:,.0f} per process)")


if __name__ == "__main__":
    main()
