"""Send spacing shared by every process through Redis (cloud mode's Telegram limits).

One Lua script per send reserves the next free slot for a key on Redis's own clock, so workers
on different machines agree; the caller sleeps until its slot. If Redis cannot be reached the
send is spaced within this process instead (and a ``429`` from Telegram, honoured by the
adapter, remains the last word): an outage of the queue never blocks a notification.
"""

from __future__ import annotations

import asyncio
import math

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from autorunner.spacing import LocalSpacer

log = structlog.get_logger("autorunner.spacer")

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local at = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
redis.call('SET', KEYS[1], string.format('%.6f', at + interval),
  'PX', math.ceil((at + interval - now) * 1000) + 1000)
return string.format('%.6f', at - now)
"""


class RedisSpacer:
    """``Spacer`` on Redis; keys live under ``prefix``."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._prefix = prefix
        self._reserve = client.register_script(RESERVE)
        self._fallback = LocalSpacer()

    async def reserve(self, key: str, interval: float) -> float:
        """Take the next slot for ``key``; the seconds until it comes."""
        return float(await self._reserve(keys=[f"{self._prefix}:{key}"], args=[interval]))

    async def wait(self, key: str, interval: float) -> None:
        try:
            delay = await self.reserve(key, interval)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("spacer.local_fallback", error=str(exc))
            await self._fallback.wait(key, interval)
            return
        if delay > 0 and math.isfinite(delay):
            await asyncio.sleep(delay)
