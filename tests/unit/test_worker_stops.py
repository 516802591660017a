"""The worker when the runner is paused, stopped or overtaken: events are held, not denied;
the ledger's sending boundary under cancellation and takeover; outcomes no answer left unknown."""

from __future__ import annotations

import asyncio
from dataclasses import replace as replace_route
from typing import Any

import pytest

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.deciders.rules import RulesDecider
from autorunner.decision import Action, Decision
from autorunner.errors import DeliveryUnknown, Superseded
from autorunner.events import Event
from autorunner.notional import moves_no_money
from autorunner.pipeline import Pipeline
from autorunner.policy import Policy, Route, default_policy
from autorunner.retry import RetryPolicy
from autorunner.store.memory import MemoryStore
from tests.helpers import FakeClock, eventually, make_event, raw_delivery
from tests.unit.worker_rig import (
    SLOW_ROUTE,
    ScriptedAdapter,
    TwoStepDecider,
    rig,
    status_is,
)


class FlagCountingStore(MemoryStore):
    """The in-memory store, counting how often the kill switch is read."""

    def __init__(self) -> None:
        super().__init__()
        self.flag_reads = 0

    async def get_flag(self, name: str) -> str | None:
        self.flag_reads += 1
        return await super().get_flag(name)


async def test_paused_events_wait_untouched_and_run_once_after_resume() -> None:
    notify = ScriptedAdapter()
    store = FlagCountingStore()
    await store.set_flag("paused", "desk is offline")
    async with rig({"notify": notify}, store=store) as r:
        await r.submit("e1")
        seen = store.flag_reads
        await eventually(lambda: _flag_read_since(store, seen, 3))
        assert (await r.status_of("e1"), notify.calls) == ("pending", [])
        await store.set_flag("paused", None)
        await eventually(lambda: status_is(r, "e1", "done"))
    assert [key for key, _ in notify.calls] == ["e1:notify"]
    detail = await store.get_event("e1")
    assert detail is not None
    assert [(run.attempt, run.outcome) for run in detail.runs] == [(1, "done")]


async def test_the_kill_switch_stops_a_running_event_before_its_next_effect() -> None:
    first = ScriptedAdapter(block=asyncio.Event())
    second = ScriptedAdapter(kind="relay")
    store = MemoryStore()
    both = Route(name="d", objective="o", allowed_actions=("notify", "relay"))
    async with rig(
        {"notify": first, "relay": second},
        store=store,
        decider=TwoStepDecider(),
        policy=Policy(routes=(), default=both),
    ) as r:
        await r.submit("e1")
        await first.called.wait()
        await store.set_flag("paused", "stop now")
        assert first.block is not None
        first.block.set()
        await eventually(lambda: status_is(r, "e1", "pending"))
        assert second.calls == []
        await store.set_flag("paused", None)
        await eventually(lambda: status_is(r, "e1", "done"))
    assert [key for key, _ in first.calls] == ["e1:first"]
    assert [key for key, _ in second.calls] == ["e1:second"]
    detail = await store.get_event("e1")
    assert detail is not None
    assert [e["status"] for e in detail.effects] == ["done", "done"]
    [run] = detail.runs
    assert run.decision is not None
    assert run.decision["reused"] is True


class AskedDecider:
    """Answers one notify step, once released; counts how often it was asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def decide(self, envelope: object, context: object, *, route: Route) -> Decision:
        self.asked += 1
        self.entered.set()
        await self.release.wait()
        return Decision(
            actions=(Action(step_id="notify", kind="notify"),),
            rationale=f"answer {self.asked}",
            decider=self.name,
            version="test",
        )


@pytest.mark.parametrize(("name", "asked"), [("llm", 1), ("rules", 2)])
async def test_a_decision_held_by_the_kill_switch_before_its_first_effect(
    name: str, asked: int
) -> None:
    """A model's decision is pinned as soon as the policy allows it: the attempt resumed after
    the pause acts on it without asking the model again. The rules' is pinned with the first
    effect it begins (one wait on the store, not two), so the resumed attempt asks them again."""
    notify = ScriptedAdapter()
    decider = AskedDecider(name)
    store = MemoryStore()
    route = Route(name="d", objective="o", allowed_actions=("notify",), decider=name)
    async with rig(
        {"notify": notify},
        store=store,
        deciders={name: decider},
        policy=Policy(routes=(), default=route),
    ) as r:
        await r.submit("e1")
        await decider.entered.wait()
        await store.set_flag("paused", "hold on")
        decider.release.set()
        await eventually(lambda: status_is(r, "e1", "pending"))
        assert notify.calls == []
        await store.set_flag("paused", None)
        await eventually(lambda: status_is(r, "e1", "done"))
    assert decider.asked == asked
    assert [key for key, _ in notify.calls] == ["e1:notify"]
    detail = await store.get_event("e1")
    assert detail is not None
    [run] = detail.runs
    assert run.decision is not None
    assert run.decision.get("reused", False) is (name == "llm")


async def _flag_read_since(store: FlagCountingStore, seen: int, more: int) -> bool:
    return store.flag_reads >= seen + more


@pytest.mark.parametrize(
    ("delivery", "status", "calls"), [("at_most_once", "unknown", 1), ("at_least_once", "done", 2)]
)
async def test_a_request_with_no_answer_is_unknown_at_most_once_and_resent_at_least_once(
    delivery: DeliveryMode, status: str, calls: int
) -> None:
    notify = ScriptedAdapter(
        delivery=delivery, failures=[DeliveryUnknown("telegram did not answer (ReadTimeout)")]
    )
    async with rig({"notify": notify}, retry=RetryPolicy(base_delay=0.01)) as r:
        await r.submit("e1")
        await eventually(lambda: status_is(r, "e1", "done"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert [e["status"] for e in detail.effects] == [status]
    assert len(notify.calls) == calls


async def test_a_matched_routes_own_time_limit_bounds_the_attempt_not_the_defaults() -> None:
    notify = ScriptedAdapter(block=asyncio.Event())
    slow = replace_route(SLOW_ROUTE, match={"query_id": "q-1"})
    policy = Policy(routes=(slow,), default=default_policy().default)  # the default allows 30 s
    async with rig({"notify": notify}, policy=policy, retry=RetryPolicy(base_delay=0.01)) as r:
        await r.submit("e1")
        await eventually(lambda: status_is(r, "e1", "done"))  # the cut-off effect is then unknown
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert detail.runs[0].error == "TransientError: timed out after 0.05s (route 'slow')"
    assert detail.runs[0].route == "slow"


class SlotWaiting:
    """An at-most-once adapter that waits for a send slot (as Telegram does) before its request
    leaves, and counts what it really sent."""

    kind = "notify"
    delivery: DeliveryMode = "at_most_once"
    waits_to_send = True
    notional = staticmethod(moves_no_money)

    def __init__(self) -> None:
        self.slot = asyncio.Event()
        self.waiting = asyncio.Event()
        self.sent: list[str] = []

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        self.waiting.set()
        await self.slot.wait()
        await sending()
        self.sent.append(effect_key)
        return {"sent": True}


async def test_a_stalled_attempt_whose_effect_was_taken_over_never_sends_it() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    stalled, taker = SlotWaiting(), SlotWaiting()
    taker.slot.set()

    def pipeline(adapter: SlotWaiting) -> Pipeline:
        return Pipeline(
            ledger=store,
            flags=store,
            approvals=store,
            policy=default_policy(),
            deciders={"rules": RulesDecider()},
            adapters={"notify": adapter},
            clock=clock,
        )

    await store.insert_event(make_event("e1"), raw_delivery())
    first = await store.acquire("e1", owner="a", lease=5)
    assert first is not None
    running = asyncio.create_task(pipeline(stalled).run(first))
    await stalled.waiting.wait()  # the effect is planned; its attempt waits for a slot
    clock.advance(6)  # ...so long that its lease lapses
    second = await store.acquire("e1", owner="b", lease=5)
    assert second is not None
    done = await pipeline(taker).run(second)
    assert (done.error, taker.sent) == (None, ["e1:notify"])
    stalled.slot.set()
    late = await running
    assert isinstance(late.error, Superseded)
    assert stalled.sent == []  # the message went out once
