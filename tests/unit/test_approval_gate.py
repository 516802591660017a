"""Approval gates: which actions wait (pure), the binding of an approval to the exact actions,
and the pipeline parking, resuming and denying on the answer (in-memory twins)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autorunner.approvals import approval_id, fingerprint, gated
from autorunner.decision import Action
from autorunner.notional import Unvalued, Valued, Valuer
from autorunner.pipeline import Attempt, Pipeline
from autorunner.policy import ActionTemplate, Approval, Constraints, Policy, Route, Rule
from autorunner.records import Operation
from autorunner.store.memory import MemoryStore
from tests.helpers import make_event, raw_delivery
from tests.unit.worker_rig import ScriptedAdapter

GATE = Approval(actions=("order",), approvers=("desk",), above_notional_usd=200)
VALUERS: dict[str, Valuer] = {
    "order": lambda params: Valued(params["usd"]) if "usd" in params else Unvalued("no usd"),
    "notify": lambda params: None,
}


def order(step: str = "buy", **params: Any) -> Action:
    return Action(step_id=step, kind="order", params=params)


def test_only_gated_kinds_above_the_threshold_or_of_unknown_notional_wait() -> None:
    small, big, unknown = order("s", usd=200), order("b", usd=200.01), order("u")
    tell = Action(step_id="t", kind="notify", params={})
    assert gated([small, big, unknown, tell], GATE, VALUERS) == [big, unknown]
    everything = replace(GATE, above_notional_usd=None)
    assert gated([small, tell], everything, VALUERS) == [small]


def test_an_approval_is_bound_to_the_exact_actions_and_event_and_generation() -> None:
    asked = fingerprint([order(usd=300)])
    assert fingerprint([order(usd=300)]) == asked
    assert fingerprint([order(usd=301)]) != asked
    assert fingerprint([order("sell", usd=300)]) != asked
    assert approval_id("e1", 1, asked) != approval_id("e2", 1, asked)
    assert approval_id("e1", 1, asked) != approval_id("e1", 2, asked)
    assert len(f"ap:y:{approval_id('e1', 1, asked)}".encode()) <= 64  # a button's callback_data


def route(ungated: str, usd: float = 500) -> Route:
    return Route(
        name="orders",
        objective="o",
        allowed_actions=("order", "notify"),
        constraints=Constraints(max_attempts=1),
        approval=replace(GATE, ungated=ungated),  # type: ignore[arg-type]
        rules=(
            Rule(
                actions=(
                    ActionTemplate(step="buy", kind="order", params={"usd": usd}),
                    ActionTemplate(step="tell", kind="notify", params={}),
                )
            ),
        ),
    )


class Rig:
    def __init__(self, on: Route) -> None:
        self.store = MemoryStore()
        self.orders = ScriptedAdapter(kind="order")
        self.notes = ScriptedAdapter(kind="notify")
        self.orders.notional = VALUERS["order"]  # type: ignore[assignment]
        self.pipeline = self.build(on)

    def build(self, on: Route) -> Pipeline:
        from autorunner.deciders.rules import RulesDecider  # noqa: PLC0415

        return Pipeline(
            ledger=self.store,
            flags=self.store,
            approvals=self.store,
            policy=Policy(routes=(), default=on),
            deciders={"rules": RulesDecider()},
            adapters={"order": self.orders, "notify": self.notes},
        )

    async def run(self, event_id: str = "e1") -> Attempt:
        leased = await self.store.acquire(event_id, owner="w", lease=30)
        assert leased is not None
        attempt = await self.pipeline.run(leased)
        ended = replace(attempt.record, outcome="awaiting" if attempt.awaiting else "done")
        await self.store.finish(ended, owner="w")
        return attempt

    def performed(self) -> list[str]:
        return [key for key, _ in self.orders.calls + self.notes.calls]


async def test_a_gated_decision_waits_whole_by_default_and_runs_once_approved() -> None:
    rig = Rig(route("wait"))
    await rig.store.insert_event(make_event("e1"), raw_delivery())
    first = await rig.run()
    assert first.awaiting is not None
    assert rig.performed() == []
    assert first.record.approval is not None
    assert first.record.approval["steps"] == ["buy"]
    answered = await rig.store.answer_approval(
        first.awaiting, approve=True, by="ann", via="cli", reason=None, at=1.0
    )
    assert answered is not None
    assert answered.resumed
    second = await rig.run()
    assert second.awaiting is None
    assert sorted(rig.performed()) == ["e1:buy", "e1:tell"]
    assert second.record.approval is not None
    assert second.record.approval["answered_by"] == "ann"


async def test_ungated_actions_run_at_once_when_the_route_says_and_a_rejection_denies_the_rest() -> (
    None
):
    rig = Rig(route("run"))
    await rig.store.insert_event(make_event("e1"), raw_delivery())
    first = await rig.run()
    assert first.awaiting is not None
    assert rig.performed() == ["e1:tell"]
    await rig.store.answer_approval(
        first.awaiting, approve=False, by="ann", via="console", reason="too big", at=1.0
    )
    second = await rig.run()
    assert rig.performed() == ["e1:tell"]  # told once; the order never sent
    assert second.record.verdict is not None
    [denied] = second.record.verdict["denied"]
    assert denied["reason"] == f"rejected by ann via console: too big ({first.awaiting})"


async def test_an_approval_of_one_decision_does_not_carry_over_to_a_changed_one() -> None:
    rig = Rig(route("wait", usd=300))
    await rig.store.insert_event(make_event("e1"), raw_delivery())
    first = await rig.run()
    assert first.awaiting is not None
    await rig.store.answer_approval(
        first.awaiting, approve=True, by="ann", via="cli", reason=None, at=1.0
    )
    await rig.run()
    assert rig.performed() == ["e1:buy", "e1:tell"]
    # The event decided again, now for a bigger order: the approval given for $300 is not it.
    rig.pipeline = rig.build(route("wait", usd=5000))
    await rig.store.rerun("e1", operation=Operation(at=2.0, actor="bo", action="events.rerun"))
    again = await rig.run()
    assert again.awaiting is not None
    assert again.awaiting != first.awaiting
    assert rig.performed() == ["e1:buy", "e1:tell"]  # nothing more until a person says so


async def test_a_persons_no_stands_when_the_gate_is_lifted_while_the_event_waited() -> None:
    rig = Rig(route("wait"))
    await rig.store.insert_event(make_event("e1"), raw_delivery())
    first = await rig.run()
    assert first.awaiting is not None
    await rig.store.answer_approval(
        first.awaiting, approve=False, by="ann", via="cli", reason="no", at=1.0
    )
    rig.pipeline = rig.build(replace(route("wait"), approval=None))  # SIGHUP: no gate now
    second = await rig.run()
    assert rig.performed() == ["e1:tell"]  # the order stays refused
    assert second.record.verdict is not None
    [denied] = second.record.verdict["denied"]
    assert denied["reason"].startswith("rejected by ann via cli: no")
