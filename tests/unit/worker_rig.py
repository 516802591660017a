"""The worker test rig: scripted adapters and deciders, and a worker over the in-memory twins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from autorunner.adapters.base import Adapter, DeliveryMode, Sending
from autorunner.deciders import Decider
from autorunner.deciders.rules import RulesDecider
from autorunner.decision import Action, Decision
from autorunner.envelope import Envelope
from autorunner.events import Event
from autorunner.metrics import Metrics
from autorunner.notional import moves_no_money
from autorunner.outbox import StoreThenQueue
from autorunner.pipeline import Pipeline
from autorunner.policy import Constraints, Policy, Route, default_policy
from autorunner.queue.memory import MemoryQueue
from autorunner.records import EventStatus
from autorunner.retry import RetryPolicy
from autorunner.store.memory import MemoryStore
from autorunner.worker import Worker, WorkerConfig
from tests.helpers import make_event, raw_delivery


@dataclass
class ScriptedAdapter:
    """An adapter whose n-th call raises ``failures[n]`` (if any) and records every call."""

    kind: str = "notify"
    delivery: DeliveryMode = "at_most_once"
    notional = staticmethod(moves_no_money)
    waits_to_send = False
    failures: list[Exception] = field(default_factory=list)
    block: asyncio.Event | None = None
    calls: list[tuple[str, float]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        self.calls.append((effect_key, time.monotonic()))
        self.called.set()
        if self.block is not None:
            await self.block.wait()
        if self.failures:
            raise self.failures.pop(0)
        return {"ok": True}


class TwoStepDecider:
    name = "rules"

    async def decide(
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
    ) -> Decision:
        return Decision(
            actions=(
                Action(step_id="first", kind="notify"),
                Action(step_id="second", kind="relay"),
            ),
            rationale="two steps",
            decider="rules",
            version="test",
        )


class BlockingDecider:
    name = "rules"

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def decide(
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
    ) -> Decision:
        self.entered.set()
        await self.release.wait()
        return await RulesDecider().decide(envelope, context, route=route)


@dataclass
class Rig:
    store: MemoryStore
    queue: MemoryQueue
    worker: Worker
    stop: asyncio.Event

    async def submit(self, event_id: str) -> None:
        await self.store.insert_event(make_event(event_id), raw_delivery())
        await self.queue.enqueue(event_id)

    async def status_of(self, event_id: str) -> EventStatus:
        detail = await self.store.get_event(event_id)
        assert detail is not None
        return detail.summary.status


@asynccontextmanager
async def rig(
    adapters: dict[str, Adapter],
    *,
    policy: Policy | None = None,
    decider: Decider | None = None,
    deciders: dict[str, Decider] | None = None,
    retry: RetryPolicy | None = None,
    grace: float = 5.0,
    store: MemoryStore | None = None,
    queue: MemoryQueue | None = None,
) -> AsyncIterator[Rig]:
    store = store or MemoryStore()
    queue = queue or MemoryQueue()
    pipeline = Pipeline(
        ledger=store,
        flags=store,
        approvals=store,
        policy=policy or default_policy(),
        deciders={"rules": decider or RulesDecider(), **(deciders or {})},
        adapters=adapters,
        pause_check_seconds=0,
    )
    worker = Worker(
        store=store,
        journal=store,
        queue=queue,
        outbox=StoreThenQueue(store, queue),
        pipeline=pipeline,
        metrics=Metrics(),
        config=WorkerConfig(
            name="w1",
            concurrency=4,
            lease=5,
            claim_wait=0.05,
            grace=grace,
            retry=retry or RetryPolicy(),
        ),
        rand=lambda: 1.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield Rig(store=store, queue=queue, worker=worker, stop=stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def status_is(r: Rig, event_id: str, status: EventStatus) -> bool:
    return await r.status_of(event_id) == status


SLOW_ROUTE = Route(
    name="slow",
    objective="o",
    allowed_actions=("notify",),
    constraints=Constraints(max_execution_seconds=0.05, max_attempts=2),
)
