"""How every long-running ``autorunner`` process runs its main coroutine: on uvloop (installed
with uvicorn[standard]) when it is there, with Python's cyclic garbage collector set for a
service.

Left at its defaults (Python 3.11), the collector scans its youngest generation every 700 net
allocations of container objects. A worker with 64 jobs in flight makes that many within a few
jobs, so the objects of jobs still running are promoted to the older generations, die there, and
every so often a full collection walks the whole heap, every imported module's objects included.
Measured in ``bench.cost_model`` (docs/benchmarks.md, issue 16): 15 full collections of ≈ 43 ms
in a 20,000-job drain, ≈ 1 s of collector time in all, a tenth of the worker's CPU. Two settings
remove most of it:

- what exists before the loop starts (the imported modules, settings) lives as long as the
  process: after one collection it is frozen (``gc.freeze``) into the permanent generation,
  which no collection walks (what the main coroutine builds, the runtime and its policy, is not);
- the youngest generation is scanned every ``YOUNG_GENERATION`` net allocations, so a job's
  short-lived objects die young. Garbage in reference cycles waits a little longer before it is
  freed; ``bench.memory`` measures the processes' memory with these settings.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

YOUNG_GENERATION = 10_000
"""Net allocations of container objects between two scans of the youngest generation."""


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` as every ``autorunner`` server runs: the collector set, on uvloop."""
    set_collector()
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main)
    return uvloop.run(main)


def set_collector() -> None:
    """Freeze what exists now (after collecting what is already garbage), and scan the youngest
    generation every ``YOUNG_GENERATION`` allocations; the older generations' thresholds stay."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, middle, oldest)
