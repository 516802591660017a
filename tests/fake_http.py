"""A scripted HTTP server for tests: a real uvicorn server on a free loopback port.

Each route answers from a queue of scripted responses (the last one repeats) and every request
is recorded with its arrival time, headers and exact body bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import uvicorn


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float
    raw_path: str = ""
    """The path as it was sent, percent-encoding and all (``path`` is decoded)."""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is (an event stream, say) instead of JSON


class ScriptedServer:
    """ASGI app answering ``(method, path)`` from scripted replies; 404 otherwise."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: dict[tuple[str, str], list[Reply]] = {}

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self._script[(method, path)] = list(replies)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(
            Recorded(
                scope["method"],
                scope["path"],
                scope["query_string"].decode(),
                headers,
                b"".join(chunks),
                time.time(),
                scope["raw_path"].decode("latin-1"),
            )
        )
        queue = self._script.get((scope["method"], scope["path"]))
        reply = (
            (queue.pop(0) if len(queue) > 1 else queue[0])
            if queue
            else Reply(404, {"error": "not found"})
        )
        if reply.raw is not None:
            payload = reply.raw
        else:
            payload = b"" if reply.body is None else orjson.dumps(reply.body)
        headers_out = {"content-type": "application/json", **reply.headers}
        out = [(k.encode(), v.encode()) for k, v in headers_out.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": payload})


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(app: Any, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = _QuietServer(uvicorn.Config(app, log_config=None, lifespan=lifespan, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
