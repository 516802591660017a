"""Benchmark: the operator console's pages on a large store, and what an open console costs ingest.

    .venv/bin/python -m bench.console [--sizes 10000,100000] [--requests 50] [--duration 8]
    .venv/bin/python -m bench.console --postgres postgresql://postgres@127.0.0.1/postgres

For each size: that many events stored and run to ``done`` (no-op ``notify``) in a SQLite file,
then ``autorunner serve`` on it with workers off, and each page requested ``--requests`` times
by a logged-in client, one at a time: server-side time to the full answer (median, p95).
With ``--postgres`` (a server where a database may be created and dropped) the events go to a
fresh PostgreSQL database ``autorunner_bench_console`` in cloud mode (Redis at ``--redis``,
database 14, flushed), the pages are served by ``autorunner console``, and ingest is not
measured.
Then ingest (``wrk``, as ``bench.ingest``) with the console closed, and with three live pages
open (three server-sent-event streams, each re-reading the overview and the newest events every
second), alternating, twice. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx2

from autorunner import logs
from autorunner.config import Settings
from bench.calibrate import python_loop_seconds
from bench.ingest import free_port, runner_env, serve_cmd, server, signed_lines, wrk
from bench.worker import drain, preload

TOKEN = "bench-console-token-0123456789"
PG_DATABASE = "autorunner_bench_console"
PAGES = ("/", "/events", "/events?status=done", "/events/bench-7", "/dead")


def stored(db: Path, count: int) -> None:
    settings = Settings(queue_url=f"sqlite:///{db}", worker_concurrency=64, log_level="warning")
    asyncio.run(preload(settings, count))
    asyncio.run(drain(settings, count))


def stored_in_postgres(server_url: str, redis_url: str, count: int) -> dict[str, str]:
    """A fresh database with ``count`` events run to ``done``; the cloud settings for it."""
    import psycopg  # noqa: PLC0415 - only this mode needs them
    import redis  # noqa: PLC0415

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        "RUNNER_MODE": "cloud",
        "QUEUE_URL": redis_url,
        "DATABASE_URL": server_url.rsplit("/", 1)[0] + f"/{PG_DATABASE}",
    }
    settings = Settings(
        runner_mode="cloud",
        queue_url=redis_url,
        database_url=env["DATABASE_URL"],
        worker_concurrency=64,
        log_level="warning",
    )
    asyncio.run(preload(settings, count))
    asyncio.run(drain(settings, count))
    return env


def login(base: str) -> httpx2.Client:
    client = httpx2.Client(base_url=base, timeout=30)
    page = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "/"})
    return client


def page_times(base: str, requests: int) -> dict[str, tuple[float, float]]:
    figures = {}
    with contextlib.closing(login(base)) as client:
        for page in PAGES:
            client.get(page)  # warm
            took = []
            for _ in range(requests):
                started = time.perf_counter()
                answer = client.get(page)
                took.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (page, answer.status_code)
            took.sort()
            figures[page] = (statistics.median(took), took[int(len(took) * 0.95) - 1])
    return figures


def show(figures: dict[str, tuple[float, float]]) -> None:
    print("| page | median ms | p95 ms |\n|---|---:|---:|")
    for page, (median, p95) in figures.items():
        print(f"| `{page}` | {median:.1f} | {p95:.1f} |")


def vacuum(database_url: str) -> None:
    import psycopg  # noqa: PLC0415 - only the PostgreSQL mode needs it

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def live_readers(base: str, count: int, stop: threading.Event) -> list[threading.Thread]:
    def read() -> None:
        with (
            contextlib.closing(login(base)) as client,
            client.stream("GET", "/live", timeout=None) as stream,
        ):
            for _ in stream.iter_bytes():
                if stop.is_set():
                    return

    threads = [threading.Thread(target=read, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--postgres", help="a PostgreSQL server URL: measure pages on it")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    logs.configure(level="warning")
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-bench-console-"))
    print(f"CPU yardstick {python_loop_seconds():.2f}s")
    for size in (int(s) for s in args.sizes.split(",")):
        db = tmp / f"events-{size}.db"
        started = time.perf_counter()
        port = free_port()
        env = {**runner_env(db, port, workers=False, log_level="warning"), "CONSOLE_TOKEN": TOKEN}
        command = serve_cmd()
        if args.postgres:
            env.update(stored_in_postgres(args.postgres, args.redis, size))
            command = [*command[:-1], "console"]
        else:
            stored(db, size)
        print(f"\n{size:,} events stored and run in {time.perf_counter() - started:.0f}s")
        with server(command, port, env):
            figures = page_times(f"http://127.0.0.1:{port}/console", args.requests)
            show(figures)
            if args.postgres:  # as autovacuum would leave it (this machine's server has it off)
                vacuum(env["DATABASE_URL"])
                print("after VACUUM ANALYZE:")
                show(page_times(f"http://127.0.0.1:{port}/console", args.requests))
    if args.postgres:
        return

    lines = tmp / "signed.tsv"
    rows = signed_lines(150_000)
    lines.write_text("".join(f"{a}\t{b}\t{c}\t{d.decode()}\n" for a, b, c, d in rows))
    rates: dict[str, list[float]] = {"console closed": [], "three live pages open": []}
    for _ in range(2):
        for name, got in rates.items():
            port = free_port()
            db = tmp / f"ingest-{len(got)}-{'live' if 'open' in name else 'closed'}.db"
            env = {
                **runner_env(db, port, workers=False, log_level="warning"),
                "CONSOLE_TOKEN": TOKEN,
            }
            with server(serve_cmd(), port, env):
                stop = threading.Event()
                readers = (
                    live_readers(f"http://127.0.0.1:{port}/console", 3, stop)
                    if "open" in name
                    else []
                )
                time.sleep(1.0)
                got.append(wrk(port, lines, args.duration, 64)["rate"])
                stop.set()
            for reader in readers:
                reader.join(timeout=5)
    print("\n| ingest | req/s (each run) |\n|---|---|")
    for name, got in rates.items():
        print(f"| {name} | {', '.join(f'{r:,.0f}' for r in got)} |")


if __name__ == "__main__":
    main()
