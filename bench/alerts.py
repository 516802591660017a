"""Benchmark: the alert notifier's path — what one check costs, and how long an incident takes
to reach the chat.

    .venv/bin/python -m bench.alerts [--events 20000] [--checks 200] [--trials 10] [--interval 1]

1. A SQLite store holding ``--events`` finished events (one effect each, one in ten failed) and
   a queue: ``--checks`` notifier checks back to back, timed (the store and queue reads, the
   comparison; no incident, so nothing is sent). Its cost per second of running is that time
   divided by ``ALERT_INTERVAL``.
2. Incident to message: the notifier runs with ``--interval`` against a local fake Bot API; the
   kill switch is turned on at a random moment and the time until the fake receives the message
   is measured, ``--trials`` times (each followed by the resolve). Expect about half the
   interval plus one check plus one request.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

from autorunner import logs
from autorunner.alerts import Watch
from autorunner.backends import Backends, open_backends
from autorunner.config import Settings
from autorunner.events import Event
from autorunner.notifier import Notifier, TelegramTarget
from autorunner.records import EffectIntent, EffectStatus, RawDelivery
from bench.calibrate import python_loop_seconds


class Chat:
    """The Bot API's sendMessage: notes when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body", False):
            pass
        self.arrivals.append(time.perf_counter())
        self.arrived.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})


async def fill(backends: Backends, events: int) -> None:
    raw = RawDelivery(received_at=time.time(), headers={}, body="{}")
    store = backends.store
    for start in range(0, events, 500):
        batch = range(start, min(events, start + 500))
        await asyncio.gather(
            *(
                backends.outbox.admit(
                    Event(event_id=f"e-{n}", channel="test", shape="canonical", event_type="t"),
                    raw,
                )
                for n in batch
            )
        )
        for n in batch:
            intent = EffectIntent(
                effect_key=f"e-{n}:s", event_id=f"e-{n}", step_id="s", kind="http", params={}
            )
            await store.begin_effect(intent, at_least_once=True, staged=False)
            status: EffectStatus = "failed" if n % 10 == 0 else "done"
            await store.finish_effect(f"e-{n}:s", status=status, result={})


def notifier(backends: Backends, http: httpx2.AsyncClient, url: str, interval: float) -> Notifier:
    return Notifier(
        name="bench",
        store=backends.store,
        audit=backends.store,
        queue=backends.queue,
        watch=Watch(lag_threshold=60, window=1.0, hold_for=60),
        targets=[TelegramTarget(http, api=url, token="bench-token", chat="1")],  # noqa: S106 - a fake
        interval=interval,
    )


async def run(args: argparse.Namespace) -> None:
    db = Path(tempfile.mkdtemp(prefix="autorunner-bench-")) / "alerts.db"
    backends = await open_backends(Settings(queue_url=f"sqlite:///{db}", log_level="warning"))
    await fill(backends, args.events)
    chat = Chat()
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(chat, log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with httpx2.AsyncClient() as http:
        quiet = notifier(backends, http, url, args.interval)
        await quiet.tick()
        await asyncio.sleep(1.1)  # the failed effects fall out of the one-second window
        await quiet.tick()  # (their incident resolves here, before the timing starts)
        took = []
        for _ in range(args.checks):
            started = time.perf_counter()
            await quiet.tick()
            took.append((time.perf_counter() - started) * 1000)

        await backends.store.set_flag("alerts.firing", None)
        live = notifier(backends, http, url, args.interval)
        stop = asyncio.Event()
        running = asyncio.create_task(live.run(stop))
        await asyncio.sleep(args.interval)
        latency = []
        for _ in range(args.trials):
            for reason in ("bench", None):
                await asyncio.sleep(random.uniform(0, args.interval))
                chat.arrived.clear()
                started = time.perf_counter()
                await backends.store.set_flag("paused", reason)
                await chat.arrived.wait()
                latency.append((chat.arrivals[-1] - started) * 1000)
        stop.set()
        await running
    server.should_exit = True
    await serving
    await backends.close()
    took.sort()
    print(
        f"\nmachine: {python_loop_seconds():.2f}s CPU yardstick; SQLite store with"
        f" {args.events:,} events, {args.events // 10:,} failed effects\n"
    )
    print(
        f"one check: p50 {statistics.median(took):.2f} ms, p99 {took[int(len(took) * 0.99)]:.2f}"
        f" ms over {args.checks} checks = {statistics.median(took) / args.interval / 10:.3f}% of"
        f" one core at ALERT_INTERVAL={args.interval:g}s"
    )
    print(
        f"incident → message at the chat (ALERT_INTERVAL={args.interval:g}s, {len(latency)}"
        f" fire and resolve): p50 {statistics.median(latency):.0f} ms,"
        f" max {max(latency):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    logs.configure(level="warning")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
