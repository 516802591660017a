"""The worker and pipeline over the in-memory twins: once in effect, retries, limits, shutdown."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from autorunner.decision import Action, Decision
from autorunner.envelope import Envelope
from autorunner.errors import PermanentError, TransientError
from autorunner.policy import Constraints, Policy, Route, default_policy
from autorunner.queue.memory import MemoryQueue
from autorunner.retry import RetryPolicy
from autorunner.store.memory import MemoryStore
from tests.helpers import eventually
from tests.unit.worker_rig import (
    SLOW_ROUTE,
    BlockingDecider,
    ScriptedAdapter,
    TwoStepDecider,
    rig,
    status_is,
)


async def test_event_runs_once_with_one_notify_effect_and_a_full_run_record() -> None:
    notify = ScriptedAdapter()
    async with rig({"notify": notify}) as r:
        await r.submit("e1")
        await eventually(lambda: status_is(r, "e1", "done"))
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
        await eventually(lambda: status_is(r, "e1", "dead"))
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
        await eventually(lambda: status_is(r, "e1", "done"))
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
        await eventually(lambda: status_is(r, "e1", "done"))
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
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
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
        await eventually(lambda: status_is(r, "e1", "done"))
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
        await eventually(lambda: status_is(r, "e1", "dead"))
    detail = await r.store.get_event("e1")
    assert detail is not None
    assert detail.dead_reason == "permanent: HTTP 400 bad chat id"
    assert len(notify.calls) == 1


async def test_route_time_limit_bounds_a_slow_adapter_then_dead_letters_per_max_attempts() -> None:
    notify = ScriptedAdapter(block=asyncio.Event(), delivery="at_least_once")
    policy = Policy(routes=(), default=SLOW_ROUTE)
    async with rig({"notify": notify}, policy=policy, retry=RetryPolicy(base_delay=0.01)) as r:
        await r.submit("e1")
        await eventually(lambda: status_is(r, "e1", "dead"))
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
        await eventually(lambda: status_is(r, "e1", "done"))
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
        await eventually(lambda: status_is(r, "e1", "done"))
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
        await eventually(lambda: status_is(r2, "e1", "done"))
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
            await eventually(functools.partial(status_is, r, event_id, "done"))
    assert [key for key, _ in notify.calls] == ["e0:notify", "e1:notify"]
    detail = await r.store.get_event("e2")
    assert detail is not None
    verdict = detail.runs[0].verdict
    assert verdict is not None
    assert verdict["allowed"] == []
    assert [d["reason"] for d in verdict["denied"]] == [
        "route 'desk' spent its budget of 2 effects an hour"
    ]
