"""An internal API honouring ``Idempotency-Key`` like a careful real one, served in a test's
own process or, for the cloud tests, as a process of its own:

    python -m tests.fake_api PORTFILE

A repeated key gets the first answer back and nothing is performed again; the first call of
every ``fail_every``-th key fails with 503. ``GET /_counts`` reports calls and performances per
key. The chosen port is written to PORTFILE once it listens.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import uvicorn


class IdempotentApi:
    """The ASGI app; ``delay`` seconds per call let a kill land in the middle of some."""

    def __init__(self, *, fail_every: int = 10, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.performed: Counter[str] = Counter()
        self.bodies: dict[str, Any] = {}
        """The body each key was performed with."""
        self._fail_every = fail_every
        self._delay = delay

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/_counts":
            body = {"calls": self.calls, "performed": self.performed}
            await reply(send, 200, orjson.dumps(body))
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        key = dict(scope["headers"]).get(b"idempotency-key", b"").decode()
        self.calls[key] += 1
        if self._delay:
            await asyncio.sleep(self._delay)
        first_call = key not in self.performed and self.calls[key] == 1
        if first_call and len(self.calls) % self._fail_every == 0:
            await reply(send, 503, b'{"error":"busy"}')
            return
        if key not in self.performed:
            self.performed[key] += 1
            self.bodies[key] = orjson.loads(b"".join(chunks) or b"null")
        await reply(send, 201, orjson.dumps({"order": key}))


async def reply(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
    Path(sys.argv[1]).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(IdempotentApi(), log_level="warning", http="httptools")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
