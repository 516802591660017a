"""The local runner on real SQLite: dead letters and redrive, and the sweeper's recovery of lost jobs."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autorunner.adapters.base import Sending
from autorunner.app import Runtime, build_runtime
from autorunner.backends import Backends, open_backends
from autorunner.config import Settings
from autorunner.decision import Action
from autorunner.errors import TransientError
from autorunner.events import Event
from autorunner.notional import moves_no_money
from autorunner.records import EventStatus
from autorunner.serving import running
from autorunner.sweeper import sweep_once
from tests.helpers import eventually, make_event, raw_delivery


@dataclass
class FlakyNotify:
    """Fails transiently while ``failing`` is set; records every call."""

    kind: str = "notify"
    delivery: str = "at_most_once"
    notional = staticmethod(moves_no_money)
    waits_to_send = False
    failing: bool = True
    calls: list[str] = field(default_factory=list)

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        self.calls.append(effect_key)
        if self.failing:
            raise TransientError("HTTP 503 from downstream")
        return {"delivered": True}


@asynccontextmanager
async def local_runner(
    tmp_path: Path, adapter: FlakyNotify, **overrides: Any
) -> AsyncIterator[Runtime]:
    settings = Settings(
        queue_url=f"sqlite:///{tmp_path / 'runner.db'}",
        retry_base_delay=0.01,
        lease_seconds=5,
        **overrides,
    )
    backends = await open_backends(settings)
    runtime = build_runtime(settings, backends, adapters={"notify": adapter})  # type: ignore[dict-item]
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def status(backends: Backends, event_id: str) -> EventStatus | None:
    detail = await backends.store.get_event(event_id)
    return None if detail is None else detail.summary.status


async def test_exhausted_retries_dead_letter_and_redrive_completes_on_sqlite(
    tmp_path: Path,
) -> None:
    adapter = FlakyNotify()
    async with local_runner(tmp_path, adapter, max_attempts=3) as runtime:
        b = runtime.backends
        async with running(runtime, asyncio.Event()):
            await b.store.insert_event(make_event("e1"), raw_delivery())
            await b.queue.enqueue("e1")
            await eventually(lambda: _has(b, "e1", "dead"))
            dead = await b.store.list_dead_letters(limit=10)
            assert [(d.event_id, d.attempts) for d in dead] == [("e1", 3)]
            assert dead[0].reason == "gave up after 3 attempts: HTTP 503 from downstream"
            assert (await b.queue.stats()).dead == 1

            adapter.failing = False
            for event_id in await b.store.redrive("e1"):
                await b.queue.enqueue(event_id)
            await eventually(lambda: _has(b, "e1", "done"))
        detail = await b.store.get_event("e1")
    assert detail is not None
    assert [r.outcome for r in detail.runs] == ["retry", "retry", "dead", "done"]
    assert adapter.calls == ["e1:notify"] * 4
    assert detail.effects[0]["status"] == "done"


async def test_sweeper_requeues_an_event_whose_queue_entry_was_lost(tmp_path: Path) -> None:
    adapter = FlakyNotify(failing=False)
    async with local_runner(tmp_path, adapter) as runtime:
        b = runtime.backends
        await b.store.insert_event(make_event("lost"), raw_delivery())
        with sqlite3.connect(tmp_path / "runner.db") as conn:
            conn.execute("DELETE FROM jobs")
        assert (await b.queue.stats()).depth == 0
        assert await sweep_once(b.store, b.queue, after=0, clock=runtime.clock) == 1
        async with running(runtime, asyncio.Event()):
            await eventually(lambda: _has(b, "lost", "done"))
    assert adapter.calls == ["lost:notify"]


async def _has(backends: Backends, event_id: str, wanted: EventStatus) -> bool:
    return await status(backends, event_id) == wanted
