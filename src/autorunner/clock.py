"""Time as an injectable value, so leases and retries can be tested with a fake clock."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time in Unix seconds."""

system_clock: Clock = time.time
