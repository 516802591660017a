"""The fake internal API of ``bench.latency``: a minimal asyncio HTTP server noting when each
effect first arrives (keyed by its ``Idempotency-Key``), served on the benchmark's loop or in a
process of its own (``internal_api``)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol, cast

from autorunner.cli.tools import serve_forever

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass
class Arrivals:
    """When each effect key first arrived, and how often one came again."""

    first: dict[str, float] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)

    def record(self, key: str, at: float) -> None:
        if key in self.first:
            self.repeats[key] = self.repeats.get(key, 0) + 1
        else:
            self.first[key] = at


class Orders(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the internal API: every request (Content-Length
    bodies only) is answered ``200 {}`` and its ``Idempotency-Key`` recorded with the time its
    last byte was read."""

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals = arrivals
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        assert self._transport is not None
        self._buffer += data
        while (head_end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length, key = 0, ""
            for line in self._buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"idempotency-key":
                    key = value.strip().decode()
                elif name == b"transfer-encoding":
                    self._transport.write(BAD)
                    self._transport.close()
                    return
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            self._arrivals.record(key, now)
            self._transport.write(OK)


@dataclass(frozen=True)
class ApiReport:
    arrivals: Arrivals
    cpu_seconds: float | None
    """The API process's own CPU time (None when it shares the load generator's process)."""


class Api(Protocol):
    url: str

    async def count(self) -> int: ...

    async def cpu(self) -> float | None: ...

    async def report(self) -> ApiReport: ...


async def open_orders(arrivals: Arrivals) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: Orders(arrivals), "127.0.0.1", 0, backlog=2048)


def server_url(server_: asyncio.Server) -> str:
    return f"http://127.0.0.1:{server_.sockets[0].getsockname()[1]}/orders"


class LoopApi:
    """The internal API on the load generator's own event loop."""

    def __init__(self, served: asyncio.Server, arrivals: Arrivals) -> None:
        self.url = server_url(served)
        self._arrivals = arrivals

    async def count(self) -> int:
        return len(self._arrivals.first)

    async def cpu(self) -> float | None:
        return None

    async def report(self) -> ApiReport:
        return ApiReport(Arrivals(dict(self._arrivals.first), dict(self._arrivals.repeats)), None)


class ProcessApi:
    """The internal API in a process of its own, asked over a pipe."""

    def __init__(self, conn: Connection, url: str) -> None:
        self.url = url
        self._conn = conn

    def _ask_now(self, what: str) -> Any:
        self._conn.send(what)
        return self._conn.recv()

    async def _ask(self, what: str) -> Any:
        return await asyncio.to_thread(self._ask_now, what)

    async def count(self) -> int:
        return int(await self._ask("count"))

    async def cpu(self) -> float | None:
        return float(await self._ask("cpu"))

    async def report(self) -> ApiReport:
        first, repeats, cpu = await self._ask("report")
        return ApiReport(Arrivals(first, repeats), cpu)


Started = tuple[str, asyncio.AbstractEventLoop, asyncio.Event]


async def _serve_orders(arrivals: Arrivals, started: queue.SimpleQueue[Started]) -> None:
    served = await open_orders(arrivals)
    stop = asyncio.Event()
    started.put((server_url(served), asyncio.get_running_loop(), stop))
    await stop.wait()
    served.close()


def api_process(conn: Connection) -> None:
    """The API process: its event loop serves in a thread while the main thread answers
    ``count``, ``cpu`` and ``report`` on ``conn`` (blocking) until told to ``stop``."""
    arrivals = Arrivals()
    started: queue.SimpleQueue[Started] = queue.SimpleQueue()
    thread = threading.Thread(target=serve_forever, args=(_serve_orders(arrivals, started),))
    thread.start()
    url, loop, stop = started.get()
    conn.send(url)
    while (what := conn.recv()) != "stop":
        if what == "count":
            conn.send(len(arrivals.first))
        elif what == "cpu":
            conn.send(time.process_time())
        else:
            conn.send((dict(arrivals.first), dict(arrivals.repeats), time.process_time()))
    loop.call_soon_threadsafe(stop.set)
    thread.join()


@contextlib.asynccontextmanager
async def internal_api(where: str) -> AsyncIterator[Api]:
    if where == "loop":
        arrivals = Arrivals()
        served = await open_orders(arrivals)
        try:
            yield LoopApi(served, arrivals)
        finally:
            served.close()
        return
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=api_process, args=(theirs,), daemon=True
    )
    process.start()
    try:
        url = await asyncio.to_thread(ours.recv)
        yield ProcessApi(ours, str(url))
    finally:
        ours.send("stop")
        await asyncio.to_thread(process.join, 10)
