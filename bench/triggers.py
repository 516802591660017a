"""Triggers for ``bench.latency``, fired on a fixed schedule: pre-signed webhooks on keep-alive
connections, or frames pushed on the simulator's event stream; each trigger's scheduled time is
what its latency counts from."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from autorunner.sim.api import SimQuery
from autorunner.sim.simulator import Simulator

CONNECTIONS = 32
"""Keep-alive connections the webhooks are sent on."""


@dataclass
class Fired:
    """What left, and when each trigger was due to (event id → scheduled monotonic time)."""

    due: dict[str, float] = field(default_factory=dict)
    acks_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    late_ms: float = 0.0
    """The latest any trigger actually left after its scheduled time."""
    elapsed: float = 0.0


async def read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def fire_webhooks(port: int, requests: list[tuple[str, bytes]], rate: float) -> Fired:
    """Send the pre-signed ``requests`` at ``rate`` per second on keep-alive connections, each
    taking the next due request when it is free."""
    fired = Fired()
    start = time.monotonic() + 0.2
    schedule = iter(enumerate(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index, (event_id, request) in schedule:
                due = start + index / rate
                fired.due[event_id] = due
                if (delay := due - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                fired.late_ms = max(fired.late_ms, (time.monotonic() - due) * 1000)
                writer.write(request)
                status = await read_status(reader)
                fired.acks_ms.append((time.monotonic() - due) * 1000)
                fired.statuses[status] = fired.statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    fired.elapsed = time.monotonic() - start
    return fired


async def fire_frames(sim: Simulator, query: SimQuery, count: int, rate: float) -> Fired:
    """Fire ``count`` triggers at ``rate`` per second, each one frame on the query's stream."""
    fired = Fired()
    start = time.monotonic() + 0.2
    for index in range(count):
        due = start + index / rate
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        fired.late_ms = max(fired.late_ms, (time.monotonic() - due) * 1000)
        execution = sim.trigger(query, channels=frozenset({"sse"}))
        fired.due[str(execution["id"])] = due
    fired.elapsed = time.monotonic() - start
    return fired
