"""Benchmark: each runner process's RSS as shipped, idle and under load.

    .venv/bin/python -m bench.memory [--duration 10] [--events 20000]

The processes run from a runtime-only install, as the Docker image makes it (``pip install
--constraint requirements.lock .``, no extras), built once in ``.runtime-venv`` and
again when the lock or pyproject.toml changes. The dev venv would not do: it also holds what
the tests and benchmarks need, and libraries import what they find (httpcore2 loads trio,
which selenium brings; redis loads cryptography, which moto brings), ≈ 4 MB a process that no
user's process holds.

Each process's RSS is read from ``/proc`` every 0.2 s:

- ``autorunner ingress`` (cloud: PostgreSQL and Redis) idle, then under wrk (signed webhooks,
  64 connections) for ``--duration`` seconds;
- ``autorunner worker`` (cloud) idle, then draining ``--events`` preloaded jobs;
- ``autorunner serve`` (local: SQLite, workers on) idle, then under wrk for ``--duration``.

Prints each process's idle RSS, its peak under load and its RSS once the load ended.
LOG_LEVEL=info with JSON lines to /dev/null, as shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autorunner.config import Settings
from bench.calibrate import python_loop_seconds
from bench.cloud import cloud_env, count_done, fresh_database
from bench.ingest import (
    free_port,
    rss_mb,
    rss_samples,
    runner_env,
    server,
    signed_lines,
    wrk,
)
from bench.redis_keys import fresh_queue
from bench.worker import preload

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_VENV = ROOT / ".runtime-venv"


def runtime_bin() -> Path:
    """The runtime-only install's bin directory, (re)built when the lock or project changed."""
    stamp = hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    marker = RUNTIME_VENV / f".installed-{stamp}"
    if not marker.exists():
        print(f"bench.memory: installing the runtime alone into {RUNTIME_VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(RUNTIME_VENV)], check=True)
        pip = [str(RUNTIME_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run(
            [*pip, "--disable-pip-version-check", "--constraint", "requirements.lock", "."],
            cwd=ROOT,
            check=True,
        )
        marker.touch()
    return RUNTIME_VENV / "bin"


def measure(cmd: list[str], port: int, env: dict[str, str], load: Callable[[], None]) -> str:
    with server(cmd, port, env) as proc:
        time.sleep(1.0)  # settled after start-up
        idle = rss_mb(proc.pid)
        with rss_samples(proc.pid, every=0.2) as samples:
            load()
        peak, after = max(mb for _, mb in samples), samples[-1][1]
        return f"idle {idle:5.1f} MB, peak under load {peak:5.1f} MB, after {after:5.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    bin_ = runtime_bin()
    yardstick = python_loop_seconds()
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-memory-"))
    lines_file = tmp / "signed.tsv"
    rows = signed_lines(150_000)
    lines_file.write_text("".join(f"{a}\t{b}\t{c}\t{d.decode()}\n" for a, b, c, d in rows))

    def under_wrk(port: int) -> Callable[[], None]:
        return lambda: print(f"  {wrk(port, lines_file, args.duration, 64)['rate']:,.0f} req/s")

    results: dict[str, str] = {}
    with fresh_database(args.database) as database:
        with fresh_queue(args.redis) as queue:
            port = free_port()
            env = cloud_env(database, args.redis, queue, port, LOG_LEVEL="info")
            results["cloud ingress"] = measure(
                [str(bin_ / "autorunner"), "ingress"], port, env, under_wrk(port)
            )
        with fresh_queue(args.redis) as queue:
            settings = Settings(
                runner_mode="cloud", queue_url=args.redis, database_url=database, queue_name=queue
            )
            port = free_port()
            env = cloud_env(database, args.redis, queue, port, LOG_LEVEL="info")

            def drain() -> None:
                asyncio.run(preload(settings, args.events))
                while count_done(database) < args.events:
                    time.sleep(0.1)

            results["cloud worker"] = measure(
                [str(bin_ / "autorunner"), "worker"], port, env, drain
            )
    port = free_port()
    env = runner_env(tmp / "memory.db", port, workers=True, log_level="info")
    results["local serve"] = measure(
        [str(bin_ / "autorunner"), "serve"], port, env, under_wrk(port)
    )

    print(
        f"machine: 2 cores; CPU yardstick {yardstick:.2f}s; runtime-only install {RUNTIME_VENV};"
        f" LOG_LEVEL=info; wrk {args.duration} s at 64 connections; {args.events:,} jobs drained"
    )
    for role, line in results.items():
        print(f"{role:14s} {line}")


if __name__ == "__main__":
    main()
