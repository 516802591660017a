"""A CPU yardstick printed with every benchmark: this machine's speed varies between runs."""

from __future__ import annotations

import time


def python_loop_seconds(iterations: int = 10_000_000) -> float:
    """Seconds for a plain Python loop; compare runs only when this figure is close."""
    started = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i
    return time.perf_counter() - started
