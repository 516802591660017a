"""A server's main coroutine runs with the garbage collector set for a long-running process."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from autorunner.cli.tools import serve_forever
from autorunner.service_loop import YOUNG_GENERATION


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector's settings as they were, back after the test."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector")
def test_a_server_runs_with_startup_frozen_and_the_young_generation_scanned_less_often() -> None:
    seen: list[tuple[int, tuple[int, int, int]]] = []
    defaults = gc.get_threshold()

    async def main() -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))

    serve_forever(main())
    [(frozen, threshold)] = seen
    assert frozen > 10_000  # every module imported so far: no collection walks them again
    assert threshold == (YOUNG_GENERATION, defaults[1], defaults[2])
