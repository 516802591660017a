"""Benchmark: what tracing costs — ingest and worker throughput with tracing off and on.

    .venv/bin/python -m bench.tracing [--duration 8] [--rounds 3] [--events 10000] [--before SRC]

Ingest: ``autorunner serve`` with workers off under ``wrk`` (as ``bench.ingest``), tracing off,
then on (``OTEL_EXPORTER_OTLP_ENDPOINT`` at a local OTLP/HTTP sink, a process of its own that
answers every export ``200``), alternating for ``--rounds`` so the machine's drift falls on
both. With ``--before SRC`` (the ``src`` of a checkout from before tracing existed, e.g.
``git worktree add /tmp/before fcdcbfd``) a third column runs that code, to show that tracing off
costs nothing measurable. Worker: one worker process draining ``--events`` stored events with
the no-op ``notify`` action (as ``bench.worker``), off and on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autorunner import logs
from autorunner.app import build_runtime
from autorunner.backends import open_backends
from autorunner.config import Settings
from autorunner.tracing import from_environment
from bench import worker
from bench.calibrate import python_loop_seconds
from bench.ingest import free_port, runner_env, serve_cmd, server, signed_lines, wrk

SINK = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, port=int(sys.argv[1]), log_level="warning", http="httptools", loop="uvloop")
"""


def _sampled(sink: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }


TRACING: dict[str, Callable[[str], dict[str, str]]] = {
    "off": lambda sink: {},
    "on": lambda sink: {"OTEL_EXPORTER_OTLP_ENDPOINT": sink},
    "10% sampled": _sampled,
    "before": lambda sink: {},
}
"""Each variant's environment; ``before`` runs the code of ``--before`` with tracing off."""


def ingest_round(
    variant: str, lines: Path, tmp: Path, *, duration: int, sink: str, before: str | None
) -> float:
    port = free_port()
    env = runner_env(
        tmp / f"{variant}-{time.monotonic_ns()}.db", port, workers=False, log_level="info"
    )
    env |= TRACING[variant](sink)
    if variant == "before" and before:
        env |= {"PYTHONPATH": before}
    with server(serve_cmd(), port, env):
        return wrk(port, lines, duration, 64)["rate"]


async def drain(settings: Settings, events: int, environ: dict[str, str]) -> float:
    await worker.preload(settings, events)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        os.environ.pop(name, None)
    os.environ.update(environ)
    tracing = from_environment(instance="bench", role="worker")
    backends = await open_backends(settings)
    runtime = build_runtime(settings, backends, tracing=tracing)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(runtime.worker.run(stop))
    while True:
        queued = await backends.queue.stats()
        if queued.depth == 0 and queued.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await runtime.aclose()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--before", help="src directory of a checkout from before tracing")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-bench-"))
    lines = tmp / "signed.tsv"
    rows = signed_lines(150_000)
    lines.write_text("".join(f"{a}\t{b}\t{c}\t{d.decode()}\n" for a, b, c, d in rows))
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
    time.sleep(1.0)
    endpoint = f"http://127.0.0.1:{sink_port}"
    variants = ["off", "on", "10% sampled"] + (["before"] if args.before else [])
    try:
        rates: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                rates[variant].append(
                    ingest_round(
                        variant,
                        lines,
                        tmp,
                        duration=args.duration,
                        sink=endpoint,
                        before=args.before,
                    )
                )
        logs.configure(level="warning")
        drained: dict[str, list[float]] = {"off": [], "on": [], "10% sampled": []}
        for n in range(args.rounds):
            for variant, rounds in drained.items():
                db = tmp / f"worker-{variant}-{n}.db"
                settings = Settings(queue_url=f"sqlite:///{db}", log_level="warning")
                environ = TRACING[variant](endpoint)
                rounds.append(asyncio.run(drain(settings, args.events, environ)))
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    print(
        f"\nmachine: {os.cpu_count()} cores; {args.rounds} alternating rounds; ingest: wrk -t2 -c64"
        f" -d{args.duration}s, serve with workers off, LOG_LEVEL=info; worker: {args.events:,}"
        f" no-op jobs, one process; CPU yardstick {python_loop_seconds():.2f}s\n"
    )
    print("| measure | " + " | ".join(f"tracing {v}" for v in variants) + " |")
    print("|---|" + "---:|" * len(variants))
    print(
        "| ingest req/s, median (rounds) | "
        + " | ".join(
            f"{statistics.median(rates[v]):,.0f} ({', '.join(f'{r:,.0f}' for r in rates[v])})"
            for v in variants
        )
        + " |"
    )
    print(
        "| worker jobs/s, median (rounds) | "
        + " | ".join(
            f"{statistics.median(drained[v]):,.0f} ({', '.join(f'{r:,.0f}' for r in drained[v])})"
            if v in drained
            else "-"
            for v in variants
        )
        + " |"
    )


if __name__ == "__main__":
    main()
