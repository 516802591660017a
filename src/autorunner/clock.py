"""Time as an injectable value, so leases and retries can be tested with a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time in Unix seconds."""

system_clock: Clock = time.time


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first; True if stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def utc_day(at: float) -> str:
    """The UTC date of ``at`` (``YYYY-MM-DD``): a daily budget's key."""
    return time.strftime("%Y-%m-%d", time.gmtime(at))
