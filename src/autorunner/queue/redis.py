"""The Redis Streams queue (cloud mode), on the Redis 7.0 command set.

One stream per queue with one consumer group; every step is one Lua script (``redis_scripts``),
so no two workers can ever hold one entry:

* ``enqueue`` adds a stream entry, or a ``delayed`` member when it is not due yet; one job per
  event id at a time (an ``entries`` hash), so the sweeper may re-enqueue freely.
* ``claim`` promotes due delayed jobs onto the stream, takes over entries whose lease lapsed
  (``XCLAIM`` to this consumer), then reads new entries (``XREADGROUP``), and gives each a lease
  deadline. A lease is a deadline on the caller's clock kept in a sorted set, extended by the
  running worker's heartbeat: a long job is never taken while its worker lives, and a SIGKILLed
  worker's jobs are taken over once their deadline passes. (``XAUTOCLAIM`` measures idle time on
  the server's clock with one threshold per call; a per-job deadline in the same script as the
  claim keeps leases on the clock the store's leases use, and testable with a fake one.) When
  nothing is ready, ``claim`` blocks on ``XREAD`` past the last entry it saw, never longer than
  the next delayed job or lapsing lease.
* ``ack`` and ``dead_letter`` remove the entry with ``XACK`` and ``XDEL`` together, so the stream
  holds only waiting and running jobs; dead letters go to a capped ``dlq`` stream.
* ``retry`` turns the entry into a delayed job, visible at its time.
* Enqueues, and settlements (``ack``, ``retry``, ``dead_letter``), issued in one pass of the
  event loop go in one script call each (``coalesce``): one round trip for an ingress's
  concurrent webhooks, or a worker's concurrent jobs.

A lost Redis (restart without persistence) loses only deliveries: the store is the source of
truth and the sweeper enqueues every unfinished event again. Connection failures are
``QueueUnavailable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from autorunner.clock import Clock, system_clock
from autorunner.coalesce import Coalescer
from autorunner.errors import QueueUnavailable
from autorunner.queue import redis_scripts
from autorunner.queue.base import Job, QueueStats

T = TypeVar("T")
GROUP = "workers"
ENQUEUE_PAUSE = 1.0
"""Seconds ``enqueue`` fails fast after a connection failure."""
MAX_BLOCK = 1.0
"""Longest single blocking read: bounds how late a lapsed lease is noticed while idle."""


class RedisQueue:
    """``Queue`` on a Redis stream; build it with ``await RedisQueue.open(url)``."""

    def __init__(
        self, client: aioredis.Redis, *, name: str = "autorunner", clock: Clock = system_clock
    ) -> None:
        self._redis = client
        self._clock = clock
        self.name = name
        self._enqueue_paused_until = 0.0
        tag = f"{{{name}}}"  # one hash slot for every key of this queue
        self.keys = [
            f"{tag}:stream",
            f"{tag}:leases",
            f"{tag}:delayed",
            f"{tag}:entries",
            f"{tag}:deliveries",
            f"{tag}:dead",
            f"{tag}:dlq",
        ]
        self._enqueue = client.register_script(redis_scripts.ENQUEUE)
        self._claim = client.register_script(redis_scripts.CLAIM)
        self._extend = client.register_script(redis_scripts.EXTEND)
        self._settle = client.register_script(redis_scripts.SETTLE)
        self._stats = client.register_script(redis_scripts.STATS)
        self._enqueues: Coalescer[tuple[str, ...], None] = Coalescer(
            self._in_one_call(self._enqueue)
        )
        self._settlements: Coalescer[tuple[str, ...], None] = Coalescer(
            self._in_one_call(self._settle)
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        name: str = "autorunner",
        clock: Clock = system_clock,
        connect_timeout: float = 5.0,
    ) -> RedisQueue:
        """Connect and check the server; ``QueueUnavailable`` if it cannot be reached."""
        client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            health_check_interval=30,
            decode_responses=True,
        )
        queue = cls(client, name=name, clock=clock)
        try:
            await queue.ping()
        except QueueUnavailable as exc:
            await client.aclose()
            where = urlsplit(url)
            raise QueueUnavailable(
                f"cannot reach Redis at {where.hostname}:{where.port or 6379}: {exc.__cause__}"
            ) from exc
        return queue

    async def _call(self, step: Callable[[], Awaitable[T]]) -> T:
        try:
            return await step()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailable(f"Redis queue unavailable: {exc}") from exc
        except ResponseError as exc:
            if "LOADING" in str(exc) or "MISCONF" in str(exc) or "READONLY" in str(exc):
                raise QueueUnavailable(f"Redis queue unavailable: {exc}") from exc
            raise

    async def _run(self, script: AsyncScript, *args: Any) -> Any:
        return await self._call(
            lambda: script(keys=self.keys, args=[GROUP, repr(self._clock()), *args])
        )

    def _in_one_call(
        self, script: AsyncScript
    ) -> Callable[[list[tuple[str, ...]]], Awaitable[list[BaseException | None]]]:
        """A ``Coalescer``'s send: the requests of one pass (each a group of ``script``'s
        arguments) in one call of ``script``, one round trip for them all."""

        async def send(requests: list[tuple[str, ...]]) -> list[BaseException | None]:
            await self._run(script, *(arg for each in requests for arg in each))
            return [None] * len(requests)

        return send

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool, for other users of the same Redis (``RedisSpacer``)."""
        return self._redis

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def enqueue(self, event_id: str, *, delay: float = 0.0) -> None:
        """Queue a job; for ``ENQUEUE_PAUSE`` seconds after a connection failure, fail at once
        without trying: the caller (an ingress answering a webhook) must not wait on a Redis
        that is away, since the store already holds the event and the sweeper will queue it."""
        if time.monotonic() < self._enqueue_paused_until:
            raise QueueUnavailable("Redis queue unavailable (recent connection failure)")
        try:
            await self._enqueues.submit((event_id, repr(self._clock() + delay)))
        except QueueUnavailable:
            self._enqueue_paused_until = time.monotonic() + ENQUEUE_PAUSE
            raise

    async def claim(self, consumer: str, *, limit: int, lease: float, wait: float) -> list[Job]:
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while True:
            now = self._clock()
            taken, last_id, next_due, next_lapse = await self._run(
                self._claim, consumer, repr(now + lease), limit
            )
            remaining = until - loop.time()
            if taken or remaining <= 0:
                return [
                    Job(event_id=ev, deliveries=int(n), receipt=f"{entry}|{n}")
                    for ev, entry, n in taken
                ]
            block = min(remaining, MAX_BLOCK)
            for at in (next_due, next_lapse):
                if at:
                    block = min(block, max(float(at) - now, 0.001))
            await self._wait_for_entry(after=last_id, seconds=block)

    async def _wait_for_entry(self, *, after: str, seconds: float) -> None:
        """Block until an entry newer than ``after`` arrives, or ``seconds`` pass."""
        await self._call(
            lambda: self._redis.xread(
                {self.keys[0]: after}, count=1, block=max(1, int(seconds * 1000))
            )
        )

    async def extend(self, jobs: list[Job], *, lease: float) -> None:
        if not jobs:
            return
        args: list[str] = []
        for job in jobs:
            entry, n = job.receipt.split("|")
            args += [job.event_id, entry, n]
        await self._run(self._extend, repr(self._clock() + lease), *args)

    async def _settle_job(self, job: Job, outcome: str, arg: str) -> None:
        entry, n = job.receipt.split("|")
        await self._settlements.submit((job.event_id, entry, n, outcome, arg))

    async def ack(self, job: Job) -> None:
        await self._settle_job(job, "done", "")

    async def retry(self, job: Job, *, delay: float) -> None:
        await self._settle_job(job, "retry", repr(self._clock() + delay))

    async def dead_letter(self, job: Job, *, reason: str) -> None:
        await self._settle_job(job, "dead", reason)

    async def stats(self) -> QueueStats:
        ready, in_flight, delayed, dead, oldest = await self._run(self._stats)
        return QueueStats(
            depth=int(ready) + int(delayed),
            ready=int(ready),
            in_flight=int(in_flight),
            dead=int(dead),
            oldest_ready_age=self._clock() - float(oldest) if oldest else None,
        )

    async def drop(self) -> None:
        """Delete every key of this queue (tests, and decommissioning a queue name)."""
        await self._call(lambda: self._redis.delete(*self.keys))

    async def close(self) -> None:
        await self._redis.aclose()
