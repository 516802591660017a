"""The worker and pipeline over the in-memory twins: once in effect, retries, limits, shutdown."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from dataclasses import replace as replace_route
from typing import Any

import pytest

from autorunner.adapters.base import Adapter, Delivery, Sending
from autorunner.deciders import Decider
from autorunner.deciders.rules import RulesDecider
from autorunner.decision import Action, Decision
from autorunner.errors import DeliveryUnknown, PermanentError, Superseded, TransientError
from autorunner.events import Event
from autorunner.metrics import Metrics
from autorunner.notional import moves_no_money
from autorunner.pipeline import Pipeline
from autorunner.policy import Constraints, Policy, Route, default_policy
from autorunner.queue.memory import MemoryQueue
from autorunner.retry import RetryPolicy
from autorunner.store.base import EventStatus
from autorunner.store.memory import MemoryStore
from autorunner.worker import Worker, WorkerConfig
from tests.helpers import FakeClock, eventually, make_event, raw_delivery


@dataclass
class ScriptedAdapter:
    """An adapter whose n-th call raises ``failures[n]`` (if any) and records every call."""

    kind: str = "notify"
    delivery: Delivery = "at_most_once"
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
        self, envelope: dict[str, Any], context: dict[str, Any], *, route: Route
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
        self, envelope: dict[str, Any], context: dict[str, Any], *, route: Route
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
    retry: RetryPolicy | None = None,
    grace: float = 5.0,
    store: MemoryStore | None = None,
    queue: MemoryQueue | None = None,
) -> AsyncIterator[Rig]:
    store = store or MemoryStore()
    queue = queue or MemoryQueue()
    pipeline = Pipeline(
        store=store,
        policy=policy or default_policy(),
        deciders={"rules": decider or RulesDecider()},
        adapters=adapters,
        pause_check_seconds=0,
    )
    worker = Worker(
        store=store,
        queue=queue,
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


async def test_event_runs_once_with_one_notify_effect_and_a_full_run_record() -> None:
    notify = ScriptedAdapter()
    async with rig({"notify": notify}) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "done"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert [key for key, _ in notify.calls] == ["e1:notify"]
    [run] = detail.runs
    assert run.outcome == "done"
    assert run.envelope is not None
    assert run.envelope["eventId"] == "e1"
    assert run.decision is not None
    assert run.decision["policy_hash"].startswith("sha256:")
    assert run.verdict is not None
    assert run.verdict["denied"] == []
    assert [(e["effect_key"], e["status"]) for e in run.effects] == [("e1:notify", "done")]
    assert set(run.timings_ms) == {"facts", "context", "decide", "verdict", "effects"}


async def test_transient_failures_retry_with_growing_delays_then_dead_letter_and_redrive_completes() -> (
    None
):
    notify = ScriptedAdapter(failures=[TransientError("HTTP 503") for _ in range(4)])
    retry = RetryPolicy(base_delay=0.02, max_delay=1.0)
    async with rig({"notify": notify}, retry=retry, policy=default_policy(max_attempts=4)) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "dead"))
        detail = await r.store.get_event("e1")
        assert detail is not None
        assert [run.outcome for run in detail.runs] == ["retry", "retry", "retry", "dead"]
        delays = [run.retry_delay or 0.0 for run in detail.runs[:3]]
        assert delays == [0.02, 0.04, 0.08]
        gaps = [b - a for (_, a), (_, b) in zip(notify.calls, notify.calls[1:], strict=False)]
        assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=True))
        assert "gave up after 4 attempts" in (detail.dead_reason or "")
        assert [d.event_id for d in await r.store.list_dead_letters(limit=5)] == ["e1"]

        assert await r.store.redrive("e1") == ["e1"]
        await r.queue.enqueue("e1")
        await eventually(lambda: _is(r, "e1", "done"))
    assert len(notify.calls) == 5
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert detail.effects[0]["status"] == "done"


async def test_completed_effects_are_skipped_when_a_later_step_is_retried() -> None:
    first = ScriptedAdapter(kind="notify")
    second = ScriptedAdapter(kind="relay", failures=[TransientError("timeout")])
    policy = Policy(
        routes=(), default=Route(name="d", objective="o", allowed_actions=("notify", "relay"))
    )
    retry = RetryPolicy(max_attempts=3, base_delay=0.01)
    async with rig(
        {"notify": first, "relay": second}, policy=policy, decider=TwoStepDecider(), retry=retry
    ) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "done"))
    assert [k for k, _ in first.calls] == ["e1:first"]
    assert [k for k, _ in second.calls] == ["e1:second", "e1:second"]
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert detail.runs[1].effects[0]["skipped"] is True


class FickleDecider:
    """A model that answers differently every time it is asked."""

    name = "rules"

    def __init__(self) -> None:
        self.asked = 0

    async def decide(
        self, envelope: dict[str, Any], context: dict[str, Any], *, route: Route
    ) -> Decision:
        self.asked += 1
        return Decision(
            actions=(Action(step_id=f"buy-{self.asked}", kind="notify", params={"usd": 10}),),
            rationale=f"answer {self.asked}",
            decider="rules",
            version="test",
        )


async def test_a_retry_acts_on_the_decision_its_effects_began_under_not_a_new_one() -> None:
    notify = ScriptedAdapter(failures=[TransientError("HTTP 503")])
    fickle = FickleDecider()
    retry = RetryPolicy(max_attempts=3, base_delay=0.01)
    async with rig({"notify": notify}, decider=fickle, retry=retry) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "done"))
    assert [k for k, _ in notify.calls] == ["e1:buy-1", "e1:buy-1"]
    assert fickle.asked == 1  # the retry did not ask again
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert [run.decision["rationale"] for run in detail.runs if run.decision] == [
        "answer 1",
        "answer 1",
    ]
    assert detail.runs[1].decision is not None
    assert detail.runs[1].decision["reused"] is True


async def test_permanent_error_goes_straight_to_the_dead_letters() -> None:
    notify = ScriptedAdapter(failures=[PermanentError("HTTP 400 bad chat id")])
    async with rig({"notify": notify}) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "dead"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert detail.dead_reason == "permanent: HTTP 400 bad chat id"
    assert len(notify.calls) == 1


SLOW_ROUTE = Route(
    name="slow",
    objective="o",
    allowed_actions=("notify",),
    constraints=Constraints(max_execution_seconds=0.05, max_attempts=2),
)


async def test_route_time_limit_bounds_a_slow_adapter_then_dead_letters_per_max_attempts() -> None:
    notify = ScriptedAdapter(block=asyncio.Event(), delivery="at_least_once")
    policy = Policy(routes=(), default=SLOW_ROUTE)
    async with rig({"notify": notify}, policy=policy, retry=RetryPolicy(base_delay=0.01)) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "dead"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert [run.error for run in detail.runs] == [
        "TransientError: timed out after 0.05s (route 'slow')"
    ] * 2
    assert len(notify.calls) == 2


async def test_effect_cut_off_mid_call_is_marked_unknown_and_not_resent_when_at_most_once() -> None:
    notify = ScriptedAdapter(block=asyncio.Event())
    policy = Policy(routes=(), default=SLOW_ROUTE)
    async with rig({"notify": notify}, policy=policy, retry=RetryPolicy(base_delay=0.01)) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "done"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert len(notify.calls) == 1
    assert detail.effects[0]["status"] == "unknown"
    assert detail.runs[1].effects[0] == {
        "effect_key": "e1:notify",
        "kind": "notify",
        "delivery": "at_most_once",
        "status": "unknown",
        "skipped": True,
        "result": None,
    }


async def test_policy_denial_is_recorded_and_nothing_is_executed() -> None:
    notify = ScriptedAdapter()
    relay = ScriptedAdapter(kind="relay")
    policy = Policy(routes=(), default=Route(name="d", objective="o", allowed_actions=("notify",)))
    async with rig(
        {"notify": notify, "relay": relay}, policy=policy, decider=TwoStepDecider()
    ) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "done"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert relay.calls == []
    verdict = detail.runs[0].verdict
    assert verdict is not None
    assert [d["reason"] for d in verdict["denied"]] == ["action 'relay' not allowed by route 'd'"]


async def test_stop_gives_unfinished_leases_back_and_a_new_worker_completes_them() -> None:
    decider = BlockingDecider()
    store, queue = MemoryStore(), MemoryQueue()
    async with rig(
        {"notify": ScriptedAdapter()}, decider=decider, grace=0.0, store=store, queue=queue
    ) as r:
        await r.submit("e1")
        await asyncio.wait_for(decider.entered.wait(), 5)
    assert await r.status_of("e1") == "pending"
    notify = ScriptedAdapter()
    async with rig({"notify": notify}, store=store, queue=queue) as r2:
        await eventually(lambda: _is(r2, "e1", "done"))
    detail = await store.get_event("e1")
    assert detail is not None
    assert detail.summary.attempts == 1
    assert len(notify.calls) == 1


async def test_stop_lets_a_running_job_finish_within_the_grace_period() -> None:
    decider = BlockingDecider()
    async with rig({"notify": ScriptedAdapter()}, decider=decider, grace=5.0) as r:
        await r.submit("e1")
        await asyncio.wait_for(decider.entered.wait(), 5)
        r.stop.set()
        decider.release.set()
    assert await r.status_of("e1") == "done"


async def _is(r: Rig, event_id: str, status: EventStatus) -> bool:
    return await r.status_of(event_id) == status


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
        await eventually(lambda: _is(r, "e1", "done"))
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
        await eventually(lambda: _is(r, "e1", "pending"))
        assert second.calls == []
        await store.set_flag("paused", None)
        await eventually(lambda: _is(r, "e1", "done"))
    assert [key for key, _ in first.calls] == ["e1:first"]
    assert [key for key, _ in second.calls] == ["e1:second"]
    detail = await store.get_event("e1")
    assert detail is not None
    assert [e["status"] for e in detail.effects] == ["done", "done"]
    [run] = detail.runs
    assert run.decision is not None
    assert run.decision["reused"] is True


async def _flag_read_since(store: FlagCountingStore, seen: int, more: int) -> bool:
    return store.flag_reads >= seen + more


async def test_a_routes_hourly_budget_denies_effects_past_it_with_the_reason() -> None:
    notify = ScriptedAdapter()
    route = Route(
        name="desk",
        objective="o",
        allowed_actions=("notify",),
        constraints=Constraints(max_effects_per_hour=2),
    )
    async with rig({"notify": notify}, policy=Policy(routes=(), default=route)) as r:
        for event_id in ("e0", "e1", "e2"):
            await r.submit(event_id)
            await eventually(functools.partial(_is, r, event_id, "done"))
    assert [key for key, _ in notify.calls] == ["e0:notify", "e1:notify"]
    detail = await r.store.get_event("e2")
    assert detail is not None
    verdict = detail.runs[0].verdict
    assert verdict is not None
    assert verdict["allowed"] == []
    assert [d["reason"] for d in verdict["denied"]] == [
        "route 'desk' spent its budget of 2 effects an hour"
    ]


@pytest.mark.parametrize(
    ("delivery", "status", "calls"), [("at_most_once", "unknown", 1), ("at_least_once", "done", 2)]
)
async def test_a_request_with_no_answer_is_unknown_at_most_once_and_resent_at_least_once(
    delivery: Delivery, status: str, calls: int
) -> None:
    notify = ScriptedAdapter(
        delivery=delivery, failures=[DeliveryUnknown("telegram did not answer (ReadTimeout)")]
    )
    async with rig({"notify": notify}, retry=RetryPolicy(base_delay=0.01)) as r:
        await r.submit("e1")
        await eventually(lambda: _is(r, "e1", "done"))
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
        await eventually(lambda: _is(r, "e1", "done"))  # the cut-off effect is then unknown
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert detail.runs[0].error == "TransientError: timed out after 0.05s (route 'slow')"
    assert detail.runs[0].route == "slow"


class SlotWaiting:
    """An at-most-once adapter that waits for a send slot (as Telegram does) before its request
    leaves, and counts what it really sent."""

    kind = "notify"
    delivery: Delivery = "at_most_once"
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
            store=store,
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
