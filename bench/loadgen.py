"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, latency counts from it.

Measuring from the scheduled send time (not the actual one) avoids coordinated omission: a stalled
server is charged for every request that should have left meanwhile. Requests are pre-built bytes;
each of ``connections`` keep-alive sockets takes the next due request when it is free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    sent: int
    ok: int
    statuses: dict[int, int]
    elapsed: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def run(
    host: str, port: int, requests: Sequence[bytes], *, rate: float, connections: int = 32
) -> Result:
    """Send ``requests`` at ``rate`` per second; return statuses and latencies."""
    start = time.perf_counter() + 0.2
    schedule = iter(enumerate(requests))
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index, request in schedule:
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(request)
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - due) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return Result(
        sent=len(latencies), ok=ok, statuses=statuses, elapsed=elapsed, latencies_ms=latencies
    )
