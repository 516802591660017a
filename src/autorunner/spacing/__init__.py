"""Send spacing: at most one send per interval for a key (a bot, a chat), waiting for the slot
instead of failing. ``LocalSpacer`` spaces the sends of one process (local mode); ``redis``
holds ``RedisSpacer``, shared by every process through a Redis client (cloud mode)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Spacer(Protocol):
    """Spaces sends: at most one per ``interval`` seconds for a key, waiting instead of failing."""

    async def wait(self, key: str, interval: float) -> None:
        """Return when a send for ``key`` may go."""


class LocalSpacer:
    """Spacing within this process (local mode: one process sends everything)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}

    async def wait(self, key: str, interval: float) -> None:
        # No await between reading and writing ``_next``: atomic on the event loop.
        now = time.monotonic()
        at = max(self._next.get(key, 0.0), now)
        self._next[key] = at + interval
        if at > now:
            await asyncio.sleep(at - now)
