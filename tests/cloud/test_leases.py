"""Leases in cloud mode, over the real Redis and PostgreSQL services: a job running longer than
its lease keeps it while its worker lives (the heartbeat extends both leases), and another
worker polling all along never gets it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.deciders.rules import RulesDecider
from autorunner.decision import Action
from autorunner.events import Event
from autorunner.metrics import Metrics
from autorunner.notional import moves_no_money
from autorunner.outbox import StoreThenQueue
from autorunner.pipeline import Pipeline
from autorunner.policy import default_policy
from autorunner.store.postgres import PostgresStore
from autorunner.worker import Worker, WorkerConfig
from tests.backends import postgres_schema, redis_queue
from tests.helpers import eventually, make_event, raw_delivery

LEASE = 0.6
JOB_SECONDS = 4 * LEASE


class SlowNotify:
    """A notify action that takes several leases' time, and counts its calls per worker."""

    kind = "notify"
    delivery: DeliveryMode = "at_most_once"
    notional = staticmethod(moves_no_money)
    waits_to_send = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        self.calls.append(effect_key)
        await asyncio.sleep(JOB_SECONDS)  # the job's own length: what the leases must outlast
        return {"ok": True}


async def test_a_job_longer_than_its_lease_is_not_taken_over_while_its_worker_lives() -> None:
    async with postgres_schema() as url, redis_queue() as queue:
        store = await PostgresStore.open(url)
        adapters = [SlowNotify(), SlowNotify()]
        workers = [
            Worker(
                store=store,
                journal=store,
                queue=queue,
                outbox=StoreThenQueue(store, queue),
                pipeline=Pipeline(
                    ledger=store,
                    flags=store,
                    approvals=store,
                    policy=default_policy(),
                    deciders={"rules": RulesDecider()},
                    adapters={"notify": adapter},
                ),
                config=WorkerConfig(name=f"w{n}", concurrency=2, lease=LEASE, claim_wait=0.05),
                metrics=Metrics(),
            )
            for n, adapter in enumerate(adapters)
        ]
        stop = asyncio.Event()
        running = [asyncio.create_task(workers[0].run(stop))]
        try:
            await store.insert_event(make_event("long-1"), raw_delivery())
            await queue.enqueue("long-1")
            await eventually(lambda: _called(adapters[0]), within=10)
            running.append(asyncio.create_task(workers[1].run(stop)))  # polls all along
            started = time.monotonic()

            async def finished() -> bool:
                detail = await store.get_event("long-1")
                return detail is not None and detail.summary.status == "done"

            await eventually(finished, within=30, interval=0.05)
            took = time.monotonic() - started
            detail = await store.get_event("long-1")
        finally:
            stop.set()
            await asyncio.gather(*running)
            await store.close()
    assert took > 2 * LEASE  # the job did outlive its lease several times over
    assert adapters[0].calls == ["long-1:notify"]
    assert adapters[1].calls == []
    assert detail is not None
    assert [(run.attempt, run.outcome) for run in detail.runs] == [(1, "done")]


async def _called(adapter: SlowNotify) -> bool:
    return bool(adapter.calls)
