"""Benchmark: the webhook handler's own cost, in-process (no HTTP server, no load generator).

    .venv/bin/python -m bench.handler [--requests 20000] [--store sqlite|memory]
        [--log-level info|warning] [--profile out.prof]

Builds the runtime ``autorunner serve`` builds (workers off), then calls its ASGI app directly
with 64 requests in flight, each a distinct signed delivery, and reports microseconds of the
event loop per request. Log lines go to /dev/null as JSON, as ``bench.ingest`` sends them.
``--profile`` writes a cProfile of the run (read it with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autorunner import logs
from autorunner.app import build_runtime
from autorunner.backends import open_backends
from autorunner.config import Settings
from bench.calibrate import python_loop_seconds
from bench.ingest import SECRET, signed_lines

IN_FLIGHT = 64


def request(row: tuple[str, str, str, bytes]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    event_id, ts, sig, body = row
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"x-auto-event-id", event_id.encode()),
        (b"x-auto-signature-timestamp", ts.encode()),
        (b"x-auto-signature", sig.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/auto",
        "raw_path": b"/webhooks/auto",
        "query_string": b"",
        "headers": headers,
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }
    return scope, [{"type": "http.request", "body": body, "more_body": False}]


async def drive(app: Any, rows: list[tuple[str, str, str, bytes]]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = iter(rows)

    async def client() -> None:
        for row in queue:
            scope, messages = request(row)

            async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
                return messages.pop(0)

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await app(scope, receive, send)

    await asyncio.gather(*(client() for _ in range(IN_FLIGHT)))
    return statuses


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-handler-"))
    url = "memory://" if args.store == "memory" else f"sqlite:///{tmp / 'bench.db'}"
    settings = Settings(
        queue_url=url, auto_secret=SECRET, workers_enabled=False, log_level=args.log_level
    )
    backends = await open_backends(settings)
    runtime = build_runtime(settings, backends, role="serve")
    rows = signed_lines(args.requests + 2_000)
    await drive(runtime.app, rows[:2_000])  # warm up
    profiler = cProfile.Profile() if args.profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    statuses = await drive(runtime.app, rows[2_000:])
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await runtime.aclose()
    print(
        f"{args.store}, LOG_LEVEL={args.log_level}: {args.requests} requests in {elapsed:.2f} s"
        f" = {elapsed / args.requests * 1e6:.0f} µs each ({cpu / args.requests * 1e6:.0f} µs CPU"
        f" in this process), {args.requests / elapsed:,.0f}/s; statuses {statuses}",
        file=sys.__stdout__,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--profile")
    args = parser.parse_args()
    print(f"CPU yardstick {python_loop_seconds():.2f}s")
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process's lifetime
    logs.configure(level=args.log_level, fmt="json")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
