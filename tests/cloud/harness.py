"""The cloud stack for acceptance tests: a private queue server (Redis, JetStream or moto's SQS)
and PostgreSQL, a fake internal API in its own process, and ``autorunner ingress``/``worker``
processes started as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psycopg

from autorunner.sim.sender import sample_event, send_event
from tests.acceptance.runner import SECRET, Server, base_env, start_server
from tests.services import MotoSqs, PrivateNats, PrivatePostgres, PrivateRedis

QueueServer = PrivateRedis | PrivateNats | MotoSqs

POLICY = """
[default]
allowed_actions = ["http"]
[[default.rules]]
actions = [{ step = "order", kind = "http", params = { endpoint = "orders", body = { event = "${event_id}" } } }]
"""


@dataclass
class FakeApi:
    process: subprocess.Popen[bytes]
    port: int

    def counts(self) -> dict[str, dict[str, int]]:
        reply = httpx2.get(f"http://127.0.0.1:{self.port}/_counts", timeout=30)
        data: dict[str, dict[str, int]] = reply.json()
        return data


@contextlib.contextmanager
def fake_api(tmp_path: Path) -> Iterator[FakeApi]:
    port_file = tmp_path / "api.port"
    process = subprocess.Popen([sys.executable, "-m", "tests.fake_api", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            assert process.poll() is None, "the fake API exited"
            assert time.monotonic() < deadline, "the fake API did not start"
            time.sleep(0.05)
        yield FakeApi(process=process, port=int(port_file.read_text()))
    finally:
        process.kill()
        process.wait(timeout=10)


@dataclass
class Stack:
    """The services and processes of one cloud deployment on loopback."""

    tmp_path: Path
    queue: QueueServer
    postgres: PrivatePostgres
    env: dict[str, str]
    ingresses: list[Server] = field(default_factory=list)
    workers: list[Server] = field(default_factory=list)
    started: int = 0

    def start(self, command: str) -> Server:
        self.started += 1
        log = self.tmp_path / f"{command}-{self.started}.log"
        server = start_server(self.env, self.tmp_path, log, command=command)
        (self.ingresses if command == "ingress" else self.workers).append(server)
        return server

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.postgres.url) as conn:
            return conn.execute(query.encode()).fetchall()

    def count(self, query: str) -> int:
        return int(self.sql(query)[0][0])

    def stop_all(self) -> None:
        for server in self.ingresses + self.workers:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=10)


def queue_server(kind: str) -> QueueServer:
    if kind == "nats":
        return PrivateNats()
    return MotoSqs() if kind == "sqs" else PrivateRedis()


@contextlib.contextmanager
def cloud_stack(
    tmp_path: Path, api: FakeApi, *, queue: str = "redis", **extra: str
) -> Iterator[Stack]:
    """The stack on the ``queue`` named (``redis``, ``nats`` or ``sqs``)."""
    server, postgres = queue_server(queue), PrivatePostgres()
    (tmp_path / "policy.toml").write_text(POLICY)
    try:
        server.start()
        postgres.init()
        postgres.start()
        queue_env = {"QUEUE_URL": server.url}
        if isinstance(server, MotoSqs):
            queue_env = {**server.environment, "QUEUE_URL": server.create_queue("jobs")}
        env = base_env(
            tmp_path / "unused.db",
            RUNNER_MODE="cloud",
            **queue_env,
            DATABASE_URL=postgres.url,
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            HTTP_ENDPOINTS=f"orders=http://127.0.0.1:{api.port}/orders",
            LEASE_SECONDS="2",
            SWEEP_INTERVAL="1",
            SWEEP_AFTER="3",
            STORE_TIMEOUT="2",
            RETRY_BASE_DELAY="0.05",
            RETRY_MAX_DELAY="0.5",
            MAX_ATTEMPTS="30",
            SHUTDOWN_GRACE="2",
        )
        env.update(extra)
        stack = Stack(tmp_path=tmp_path, queue=server, postgres=postgres, env=env)
        try:
            yield stack
        finally:
            stack.stop_all()
    finally:
        server.close()
        postgres.close()


REFUSED = (0, 503)  # 503, or no answer at all


@dataclass
class Sent:
    """What the senders saw: every answer per event id, in order."""

    answers: dict[str, list[int]] = field(default_factory=dict)

    @property
    def accepted(self) -> set[str]:
        return {event_id for event_id, got in self.answers.items() if 202 in got}

    @property
    def duplicates(self) -> int:
        return sum(got.count(200) for got in self.answers.values())

    @property
    def refused(self) -> list[str]:
        """One entry per refusal (an event refused twice is listed twice)."""
        return [e for e, got in self.answers.items() for status in got if status in REFUSED]

    @property
    def other(self) -> list[tuple[str, int]]:
        return [
            (e, status)
            for e, got in self.answers.items()
            for status in got
            if status not in (200, 202, *REFUSED)
        ]


async def deliver(
    urls: list[str], ids: list[str], sent: Sent, *, concurrency: int, resend_refused: bool = True
) -> None:
    """Send each id once (in order, spread over ``urls``); like Auto, send a refused (503) or
    unanswered delivery again a moment later when ``resend_refused``."""
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for n, event_id in enumerate(ids):
        queue.put_nowait((n, event_id))

    async def sender(client: httpx2.AsyncClient) -> None:
        while not queue.empty():
            n, event_id = queue.get_nowait()
            url = urls[n % len(urls)]
            try:
                reply = await send_event(
                    client, url, SECRET, sample_event(event_id=event_id), event_id=event_id
                )
                status = reply.status
            except httpx2.TransportError:
                status = 0
            sent.answers.setdefault(event_id, []).append(status)
            if status in REFUSED and resend_refused:
                await asyncio.sleep(0.05)
                queue.put_nowait((n + 1, event_id))

    async with httpx2.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
