"""Benchmark: trigger-to-stored latency by channel, and how long a gap of missed triggers takes to fill.

    .venv/bin/python -m bench.channels [--triggers 500] [--rate 50] [--gaps 100,1000]

Two processes, as in use: ``autorunner simulate run`` and ``autorunner serve`` (workers off, so
only delivery and ingest are timed). Latency is the event's ``received_at`` in the runner's
store minus the execution's ``createdAt`` in the simulator, same clock. For a gap, the stream is
dropped and refused for two seconds while N triggers fire by stream only; the figure is the time
from the refusal ending until all N are stored (reconnect backoff + the poll after reconnect).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx2

from bench.calibrate import python_loop_seconds

BIN = Path(sys.executable).parent
SECRET = "sim-webhook-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def stored(db: Path) -> dict[str, float]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT execution_id, received_at FROM events").fetchall())


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def fire(
    sim: httpx2.AsyncClient, query_id: str, count: int, rate: float, channels: list[str]
) -> dict[str, float]:
    created: dict[str, float] = {}
    for _ in range(count):
        reply = (
            await sim.post("/_sim/trigger", json={"queryId": query_id, "channels": channels})
        ).json()
        created.update({e: epoch(at) for e, at in reply["created"].items()})
        await asyncio.sleep(1 / rate)
    return created


async def wait_for(db: Path, ids: set[str], within: float = 120) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ids <= set(stored(db)):
            return time.time()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{len(ids - set(stored(db)))} executions never arrived")


async def stream_open(sim: httpx2.AsyncClient) -> None:
    while (await sim.get("/_sim/stats")).json()["open_streams"] < 1:  # noqa: ASYNC110 - polls another process
        await asyncio.sleep(0.05)


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (n={len(ordered)})"


async def run(args: argparse.Namespace, tmp: Path) -> None:
    sim_port, runner_port = free_port(), free_port()
    db = tmp / "runner.db"
    env = {**os.environ, "LOG_LEVEL": "warning"}
    sim_args = [
        str(BIN / "autorunner"),
        "simulate",
        "run",
        "--port",
        str(sim_port),
        "--keepalive",
        "5",
    ]
    with process(sim_args, env, sim_port):
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{sim_port}", timeout=10) as sim:
            body = {
                "title": "bench",
                "query": {
                    "conditions": {"AND": []},
                    "actions": [
                        {
                            "stepId": "s1",
                            "type": "webhook",
                            "params": {"url": f"http://127.0.0.1:{runner_port}/webhooks/auto"},
                        }
                    ],
                },
            }
            query_id = (await sim.post("/v2/auto/queries", json=body)).json()["id"]
            runner_env = {
                **env,
                "QUEUE_URL": f"sqlite:///{db}",
                "AUTO_SECRET": SECRET,
                "PORT": str(runner_port),
                "WORKERS_ENABLED": "false",
                "ELFA_BASE_URL": f"http://127.0.0.1:{sim_port}/v2/auto",
                "ELFA_API_KEY": "bench",
                "ELFA_REQUESTS_PER_MINUTE": "600",
                "STREAM_QUERIES": query_id,
            }
            with process([str(BIN / "autorunner"), "serve"], runner_env, runner_port):
                await stream_open(sim)
                for channel in ("webhook", "sse"):
                    sent = await fire(sim, query_id, args.triggers, args.rate, [channel])
                    await wait_for(db, set(sent))
                    got = stored(db)
                    print(
                        f"{channel:8s} trigger -> stored: {percentiles([got[e] - t for e, t in sent.items()])}"
                    )
                for gap in args.gaps:
                    await stream_open(sim)
                    await sim.post("/_sim/drop-streams", json={"refuse_for": 2.0})
                    started = time.time()
                    reply = await sim.post(
                        "/_sim/trigger",
                        json={"queryId": query_id, "count": gap, "channels": ["sse"]},
                    )
                    missed = set(reply.json()["executions"])
                    reopened = started + 2.0
                    done = await wait_for(db, missed)
                    print(
                        f"gap of {gap:5d} missed triggers recovered {done - reopened:.2f} s after the stream was allowed back"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triggers", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--gaps", default="100,1000")
    args = parser.parse_args()
    args.gaps = [int(g) for g in args.gaps.split(",")]
    print(
        f"machine: {os.cpu_count()} cores; CPU yardstick {python_loop_seconds():.2f}s; "
        f"{args.triggers} triggers per channel at {args.rate:g}/s"
    )
    asyncio.run(run(args, Path(tempfile.mkdtemp(prefix="autorunner-bench-"))))


if __name__ == "__main__":
    main()
