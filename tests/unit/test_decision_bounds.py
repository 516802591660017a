"""A decision's time is bounded by its route: a decider that never answers ends in a denied
verdict, recorded, and nothing runs."""

from __future__ import annotations

import asyncio
from typing import Any

from autorunner.decision import Decision
from autorunner.envelope import Envelope
from autorunner.pipeline import Pipeline
from autorunner.policy import Constraints, Policy, Route
from autorunner.store.memory import MemoryStore
from tests.helpers import make_event, raw_delivery
from tests.unit.worker_rig import ScriptedAdapter


class Silent:
    """A model that never answers."""

    name = "llm"

    async def decide(
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
    ) -> Decision:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_decision_past_the_routes_time_limit_is_denied_and_nothing_runs() -> None:
    store, notes = MemoryStore(), ScriptedAdapter(kind="notify")
    route = Route(
        name="slow",
        objective="o",
        allowed_actions=("notify",),
        decider="llm",
        constraints=Constraints(max_decision_seconds=0.05, max_execution_seconds=30),
    )
    pipeline = Pipeline(
        ledger=store,
        flags=store,
        approvals=store,
        policy=Policy(routes=(), default=route),
        deciders={"llm": Silent()},
        adapters={"notify": notes},
    )
    await store.insert_event(make_event("e1"), raw_delivery())
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    attempt = await pipeline.run(leased)
    assert attempt.error is None  # denied, not retried: asking again would cost as much
    assert attempt.record.verdict is not None
    assert attempt.record.verdict["refused"] == (
        "invalid decision: deciding took longer than the route's 0.05 s"
    )
    assert notes.calls == []
