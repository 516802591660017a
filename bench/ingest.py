"""Benchmark: signed-webhook ingest beside a bare "hello" ASGI endpoint, on the same server, same run.

    .venv/bin/python -m bench.ingest [--duration 10] [--connections 64]

Needs ``wrk`` (Debian: ``apt-get install wrk``). Steps, each against a fresh server process:
1. the bare endpoint (``bench/hello.py``) on uvicorn with httptools + uvloop — the ceiling;
2. ``autorunner serve`` with workers off (pure ingest: verify, store with fsync, queue, 202);
3. ``autorunner serve`` with workers on (ingest while the same process runs the jobs);
4. open-loop at half of step 2's rate, for p50/p99 acknowledgement latency.
Every webhook request is unique (pre-signed, distinct event ids), so none is a duplicate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from autorunner.sim.sender import sample_event, signed_headers
from bench import loadgen
from bench.calibrate import python_loop_seconds

SECRET = "bench-secret"
HERE = Path(__file__).parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed_lines(count: int, *, at: int | None = None) -> list[tuple[str, str, str, bytes]]:
    """``count`` distinct signed deliveries, timestamped ``at`` (default: a minute from now,
    still within the signature tolerance when a short run ends)."""
    now = int(time.time()) + 60 if at is None else at
    rows = []
    for _ in range(count):
        event_id = str(uuid.uuid4())
        body = orjson.dumps(sample_event(event_id=event_id))
        headers = signed_headers(SECRET, body, event_id=event_id, timestamp=now)
        rows.append(
            (event_id, headers["x-auto-signature-timestamp"], headers["x-auto-signature"], body)
        )
    return rows


def raw_request(row: tuple[str, str, str, bytes], port: int) -> bytes:
    event_id, ts, sig, body = row
    head = (
        f"POST /webhooks/auto HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Auto-Event-Id: {event_id}\r\nX-Auto-Signature-Timestamp: {ts}\r\n"
        f"X-Auto-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@contextmanager
def server(
    cmd: list[str], port: int, env: dict[str, str], *, max_files: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, listening; ``max_files`` sets its descriptor limit (``ulimit -n``)."""

    def limit() -> None:
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit,  # noqa: PLW1509 - only a setrlimit, before exec
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def rss_samples(pid: int, every: float) -> Iterator[list[tuple[float, float]]]:
    """``pid``'s RSS, (seconds since the block began, MB), read every ``every`` seconds while
    the block runs, and once at its start and end."""
    started = time.monotonic()
    samples = [(0.0, rss_mb(pid))]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            samples.append((time.monotonic() - started, rss_mb(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        samples.append((time.monotonic() - started, rss_mb(pid)))


def wrk(port: int, lines_file: Path, duration: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(HERE / "wrk_signed.lua"),
            f"http://127.0.0.1:{port}/webhooks/auto",
            "--",
            str(lines_file),
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        figures[f"p{pct}"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    return figures


def hello_command(port: int) -> list[str]:
    """The bare endpoint (``bench/hello.py``) on uvicorn with httptools + uvloop: the ceiling."""
    return [
        str(VENV_BIN / "uvicorn"),
        "bench.hello:app",
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-proxy-headers",
        "--no-server-header",
    ]


def serve_cmd() -> list[str]:
    return [str(VENV_BIN / "autorunner"), "serve"]


def runner_env(db: Path, port: int, *, workers: bool, log_level: str) -> dict[str, str]:
    return {
        **os.environ,
        "QUEUE_URL": f"sqlite:///{db}",
        "AUTO_SECRET": SECRET,
        "PORT": str(port),
        "LOG_LEVEL": log_level,
        "LOG_FORMAT": "json",
        "WORKERS_ENABLED": str(workers).lower(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--log-level", default="info", help="the runner's LOG_LEVEL (shipped: info)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-bench-"))
    lines_file = tmp / "signed.tsv"
    rows = signed_lines(200_000)
    lines_file.write_text("".join(f"{a}\t{b}\t{c}\t{d.decode()}\n" for a, b, c, d in rows))
    results: dict[str, dict[str, float]] = {}

    port = free_port()
    with server(hello_command(port), port, dict(os.environ)) as proc:
        results["bare hello endpoint"] = wrk(port, lines_file, args.duration, args.connections)
        results["bare hello endpoint"]["rss_mb"] = rss_mb(proc.pid)

    for name, workers in (("webhook, ingest only", False), ("webhook, serve with workers", True)):
        port = free_port()
        db = tmp / f"{workers}.db"
        with server(
            serve_cmd(), port, runner_env(db, port, workers=workers, log_level=args.log_level)
        ) as proc:
            results[name] = wrk(port, lines_file, args.duration, args.connections)
            results[name]["rss_mb"] = rss_mb(proc.pid)

    half = results["webhook, ingest only"]["rate"] / 2
    port = free_port()
    fresh = signed_lines(int(half * args.duration))
    with server(
        serve_cmd(),
        port,
        runner_env(tmp / "open.db", port, workers=False, log_level=args.log_level),
    ):
        open_loop = asyncio.run(
            loadgen.run(
                "127.0.0.1", port, [raw_request(r, port) for r in fresh], rate=half, connections=32
            )
        )

    ceiling = results["bare hello endpoint"]["rate"]
    print(
        f"\nmachine: {os.cpu_count()} cores; wrk -t2 -c{args.connections} -d{args.duration}s on the same machine; "
        f"runner LOG_LEVEL={args.log_level} (JSON lines to /dev/null), SQLITE_SYNCHRONOUS=FULL; "
        f"CPU yardstick {python_loop_seconds():.2f}s\n"
    )
    print("| endpoint | req/s | x bare | p50 ms | p99 ms | non-2xx | RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, f in results.items():
        print(
            f"| {name} | {f['rate']:,.0f} | {f['rate'] / ceiling:.2f} | {f['p50']:.2f} | {f['p99']:.2f} | {f['non2xx']:.0f} | {f['rss_mb']:.0f} |"
        )
    print(
        f"\nopen loop at {half:,.0f} req/s (half the ingest maximum) for {open_loop.elapsed:.1f}s: "
        f"sent {open_loop.sent:,}, achieved {open_loop.rate:,.0f}/s, statuses {open_loop.statuses}, "
        f"p50 {open_loop.percentile(50):.2f} ms, p99 {open_loop.percentile(99):.2f} ms, "
        f"p99.9 {open_loop.percentile(99.9):.2f} ms"
    )


if __name__ == "__main__":
    main()
