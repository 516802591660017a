"""Benchmark: memory under steady load — does ``autorunner serve`` grow over a long run?

    .venv/bin/python -m bench.soak [--minutes 10] [--rate 1000] [--role serve|ingress] [--runtime]

``autorunner serve`` (SQLite, ``synchronous=FULL``, workers on, the no-op default route,
LOG_LEVEL=info with JSON lines to /dev/null) — or, with ``--role ingress``, a cloud ingress on
the machine's PostgreSQL (a throw-away database) and Redis (a fresh queue name) — takes distinct
signed webhooks at ``--rate`` per second, open loop (``bench.loadgen``), for ``--minutes``; the
server's RSS is read from ``/proc`` every 10 seconds. ``--runtime`` runs the server from the
runtime-only install ``bench.memory`` builds (as the Docker image installs it) instead of the
dev venv. Prints the RSS timeline, the first and last minute's means, the
acknowledgement latencies and how many events the workers finished. Every request is built and
signed before the run starts, each minute's with that minute's time (≈ 1.3 KB each: 600,000 of
them take ≈ 0.8 GB in this process); every one must be accepted (202).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from bench import loadgen
from bench.calibrate import python_loop_seconds
from bench.cloud import cloud_env, fresh_database
from bench.ingest import (
    VENV_BIN,
    free_port,
    raw_request,
    rss_samples,
    runner_env,
    server,
    signed_lines,
)
from bench.memory import runtime_bin
from bench.redis_keys import fresh_queue

SAMPLE_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--role", choices=["serve", "ingress"], default="serve")
    parser.add_argument("--runtime", action="store_true")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    command = [str((runtime_bin() if args.runtime else VENV_BIN) / "autorunner"), args.role]
    yardstick = python_loop_seconds()
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-soak-"))
    count = int(args.rate * args.minutes * 60)
    port = free_port()
    # Signed with the time each minute's requests will leave (the signature tolerance is
    # minutes; a run is longer): the run starts within a minute of this.
    start = int(time.time()) + 60
    per_minute = int(args.rate * 60)
    requests = [
        raw_request(row, port)
        for first in range(0, count, per_minute)
        for row in signed_lines(min(per_minute, count - first), at=start + first // per_minute * 60)
    ]
    with contextlib.ExitStack() as stack:
        if args.role == "serve":
            db = tmp / "soak.db"
            env = runner_env(db, port, workers=True, log_level="info")
        else:
            database = stack.enter_context(fresh_database(args.database))
            queue = stack.enter_context(fresh_queue(args.redis))
            env = cloud_env(database, args.redis, queue, port, LOG_LEVEL="info")
        proc = stack.enter_context(server(command, port, env))
        with rss_samples(proc.pid, every=SAMPLE_SECONDS) as samples:
            result = asyncio.run(
                loadgen.run("127.0.0.1", port, requests, rate=args.rate, connections=32)
            )
        if args.role == "serve":
            time.sleep(2)  # the last jobs finish
            with sqlite3.connect(db) as conn:
                row = conn.execute("SELECT count(*) FROM events WHERE status = 'done'").fetchone()
            outcome = f"events done {row[0]:,}"
        else:  # no worker runs: every event is stored, pending
            with psycopg.connect(database) as conn:
                row = conn.execute("SELECT count(*) FROM events").fetchone()
            outcome = f"events stored {row[0] if row else 0:,}"
    first = [rss for at, rss in samples if 0 < at <= 60]
    last = [rss for at, rss in samples if at > samples[-1][0] - 60]
    print(
        f"machine: 2 cores; CPU yardstick {yardstick:.2f}s; {' '.join(command)}"
        f" ({'serve with workers, SQLite FULL' if args.role == 'serve' else 'cloud'}),"
        f" LOG_LEVEL=info; {args.rate:,.0f} webhooks/s for {args.minutes:g} min"
    )
    print(
        f"sent {result.sent:,} (achieved {result.rate:,.0f}/s), statuses {result.statuses};"
        f" ack p50 {result.percentile(50):.2f} ms, p99 {result.percentile(99):.2f} ms,"
        f" p99.9 {result.percentile(99.9):.2f} ms; {outcome}"
    )
    print("RSS MB every 10 s: " + " ".join(f"{rss:.0f}" for _, rss in samples))
    print(
        f"RSS: start {samples[0][1]:.1f} MB, first minute mean {statistics.mean(first):.1f},"
        f" last minute mean {statistics.mean(last):.1f}, max {max(r for _, r in samples):.1f}"
    )


if __name__ == "__main__":
    main()
