"""Benchmark: what the HTTP limits cost, and what slow clients can hold of one process.

    .venv/bin/python -m bench.connections [--duration 10] [--rounds 2] [--clients 800]

Each step starts fresh ``serve`` processes (workers off, SQLite, shipped log level), once with
the runner's limits and once on uvicorn's own protocol (``bench/plain_serve.py``):

1. **Cost**: ``wrk -t2 -c64`` with distinct signed webhooks, then an open loop at half of the
   limited server's rate (p50/p99 from each request's scheduled time); the two servers
   alternate for ``--rounds`` rounds, since this machine's CPU speed drifts.
2. **Slow bodies**: ``--clients`` connections each send headers and all but 4 KiB of a body,
   then stall (60 KiB bodies, and 250 KiB ones as in the report that found the hole). Server RSS
   and a ``/healthz`` answer while they hang on, and after the body idle timeout.
3. **Idle flood under a 1,024-descriptor limit**: 1,100 connections that send nothing, then
   ``/healthz`` on a new connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import loadgen
from bench.calibrate import python_loop_seconds
from bench.ingest import (
    free_port,
    raw_request,
    rss_mb,
    runner_env,
    serve_cmd,
    server,
    signed_lines,
    wrk,
)

VENV_PY = sys.executable
PLAIN = [VENV_PY, "-m", "bench.plain_serve"]
HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: bench\r\n\r\n"


def healthz(port: int, timeout: float = 5.0) -> str:
    """How ``/healthz`` on a new connection fares: its status and time, or how it failed."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(HEALTHZ)
            status = sock.recv(64)[9:12].decode() or "closed"
    except OSError as exc:
        return f"{type(exc).__name__} after {time.perf_counter() - started:.1f}s"
    return f"{status} in {(time.perf_counter() - started) * 1000:.1f} ms"


def open_clients(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first_bytes:
            sock.sendall(first_bytes)
        clients.append(sock)
    return clients


def outcomes(clients: list[socket.socket]) -> str:
    """What the server did to each client so far: answered (by status), closed, or nothing."""
    seen: Counter[str] = Counter()
    for sock in clients:
        sock.setblocking(False)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            seen["still open"] += 1
        except OSError:
            seen["reset"] += 1
        else:
            seen[data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed"] += 1
    return ", ".join(f"{name} {count}" for name, count in sorted(seen.items()))


def partial_body(size: int) -> bytes:
    return (
        b"POST /webhooks/auto HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        + f"content-length: {size}\r\n\r\n".encode()
        + b"{"
        + b" " * (size - 4096 - 1)
    )


def cost(args: argparse.Namespace, tmp: Path, lines_file: Path) -> None:
    print("\n### Cost of the limits (ingest, workers off)\n")
    print(
        "| round | server | wrk req/s | wrk p50 ms | wrk p99 ms | open loop rate | p50 ms | p99 ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for round_no in range(1, args.rounds + 1):
        for name, cmd in (("limits", serve_cmd()), ("uvicorn only", PLAIN)):
            port = free_port()
            env = runner_env(tmp / f"{name}-{round_no}.db", port, workers=False, log_level="info")
            with server(cmd, port, env):
                closed = wrk(port, lines_file, args.duration, 64)
            half = args.half or closed["rate"] / 2
            args.half = half  # the same open-loop rate for both servers
            port = free_port()
            env = runner_env(
                tmp / f"{name}-{round_no}-open.db", port, workers=False, log_level="info"
            )
            fresh = [raw_request(r, port) for r in signed_lines(int(half * args.duration))]
            with server(cmd, port, env):
                opened = asyncio.run(
                    loadgen.run("127.0.0.1", port, fresh, rate=half, connections=32)
                )
            print(
                f"| {round_no} | {name} | {closed['rate']:,.0f} | {closed['p50']:.2f} | "
                f"{closed['p99']:.2f} | {opened.rate:,.0f}/s | {opened.percentile(50):.2f} | "
                f"{opened.percentile(99):.2f} |"
            )


def slow_bodies(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n### {args.clients} clients stalling in their bodies\n")
    print(
        "| server | body | RSS before MB | RSS held MB | /healthz meanwhile | clients after 12 s | RSS then MB |"
    )
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, cmd in (("limits", serve_cmd()), ("uvicorn only", PLAIN)):
        for size in (60 * 1024, 250 * 1024):
            port = free_port()
            env = {
                **runner_env(tmp / f"slow-{name}-{size}.db", port, workers=False, log_level="info"),
                "MAX_BODY_BYTES": str(64 * 1024 if name == "limits" else 256 * 1024),
            }
            with server(cmd, port, env) as proc:
                before = rss_mb(proc.pid)
                clients = open_clients(port, args.clients, partial_body(size))
                time.sleep(2)  # let the server read what was sent
                held = rss_mb(proc.pid)
                probe = healthz(port)
                time.sleep(12)  # past the body idle timeout (10 s)
                dropped = outcomes(clients)
                after = rss_mb(proc.pid)
                for sock in clients:
                    sock.close()
            print(
                f"| {name} | {size // 1024} KiB | {before:.0f} | {held:.0f} | {probe} | "
                f"{dropped} | {after:.0f} |"
            )


def idle_flood(tmp: Path) -> None:
    print("\n### 1,100 idle connections, descriptor limit 1,024\n")
    print(
        "| server | RSS before MB | RSS held MB | clients after 2 s | /healthz on a new connection |"
    )
    print("|---|---:|---:|---:|---|")
    for name, cmd in (("limits", serve_cmd()), ("uvicorn only", PLAIN)):
        port = free_port()
        env = runner_env(tmp / f"idle-{name}.db", port, workers=False, log_level="info")
        with server(cmd, port, env, max_files=1024) as proc:
            before = rss_mb(proc.pid)
            clients = open_clients(port, 1100, b"")
            time.sleep(2)
            refused = outcomes(clients)
            held = rss_mb(proc.pid)
            probe = healthz(port)
            for sock in clients:
                sock.close()
        print(f"| {name} | {before:.0f} | {held:.0f} | {refused} | {probe} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=800)
    args = parser.parse_args()
    args.half = 0.0
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1:] * 2)
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-bench-"))
    lines_file = tmp / "signed.tsv"
    rows = signed_lines(200_000)
    lines_file.write_text("".join(f"{a}\t{b}\t{c}\t{d.decode()}\n" for a, b, c, d in rows))
    print(
        f"machine: {os.cpu_count()} cores; CPU yardstick {python_loop_seconds():.2f}s; "
        "serve with LOG_LEVEL=info, SQLITE_SYNCHRONOUS=FULL, workers off"
    )
    cost(args, tmp, lines_file)
    slow_bodies(args, tmp)
    idle_flood(tmp)


if __name__ == "__main__":
    main()
