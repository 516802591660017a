"""Replay over the in-memory twin: re-decided under a new policy, compared, nothing executed."""

from __future__ import annotations

from autorunner.deciders.rules import RulesDecider, first_rule
from autorunner.decision import Verdict
from autorunner.envelope import build_envelope
from autorunner.policy import (
    ActionTemplate,
    Policy,
    Route,
    Rule,
    check,
    default_policy,
)
from autorunner.records import RunRecord
from autorunner.replay import classify, replay
from autorunner.store.memory import MemoryStore
from tests.helpers import kinds, make_event, raw_delivery

KINDS = kinds("notify")


async def recorded(store: MemoryStore, event_id: str, symbol: str, policy: Policy) -> None:
    event = make_event(event_id, symbol=symbol)
    await store.insert_event(event, raw_delivery())
    leased = await store.acquire(event_id, owner="w", lease=30)
    assert leased is not None
    route = policy.route_for(event)
    envelope = build_envelope(event, route)
    verdict = check(first_rule(envelope, route), route, policy_hash=policy.hash, valuers=KINDS)
    run = RunRecord(
        event_id=event_id,
        attempt=1,
        outcome="done",
        started_at=0,
        finished_at=1,
        envelope=envelope.to_dict(),
        context={"query": None},
        verdict=verdict.to_dict(),
    )
    await store.finish(run, owner="w")


async def test_a_stricter_policy_reports_exactly_the_events_whose_verdict_changes() -> None:
    store = MemoryStore()
    lenient = default_policy()
    for n, symbol in enumerate(["BTC", "ETH", "BTC", "SOL"]):
        await recorded(store, f"e{n}", symbol, lenient)
    quiet_btc = Route(name="no-btc", objective="o", allowed_actions=(), match={"symbol": "BTC"})
    stricter = Policy(routes=(quiet_btc,), default=lenient.default)
    results = {}
    for n in range(4):
        detail = await store.get_event(f"e{n}")
        assert detail is not None
        results[f"e{n}"] = (
            await replay(detail, stricter, {"rules": RulesDecider()}, valuers=KINDS)
        ).change
    assert results == {
        "e0": "newly_denied",
        "e1": "unchanged",
        "e2": "newly_denied",
        "e3": "unchanged",
    }
    # Dry-run: no run was recorded and no effect exists.
    detail = await store.get_event("e0")
    assert detail is not None
    assert len(detail.runs) == 1
    assert detail.effects == []


async def test_changed_parameters_are_a_change_and_new_actions_are_newly_allowed() -> None:
    store = MemoryStore()
    await recorded(store, "e1", "BTC", default_policy())
    detail = await store.get_event("e1")
    assert detail is not None
    louder = Route(
        name="d",
        objective="o",
        allowed_actions=("notify",),
        rules=(
            Rule(
                actions=(
                    ActionTemplate(step="notify", kind="notify", params={"text": "LOUD ${title}"}),
                )
            ),
        ),
    )
    changed = await replay(
        detail, Policy(routes=(), default=louder), {"rules": RulesDecider()}, valuers=KINDS
    )
    assert changed.change == "changed"
    more = Route(
        name="d",
        objective="o",
        allowed_actions=("notify",),
        rules=(
            Rule(
                actions=(
                    ActionTemplate(step="notify", kind="notify", params={"text": "x"}),
                    ActionTemplate(step="again", kind="notify", params={"text": "y"}),
                )
            ),
        ),
    )
    assert (
        await replay(
            detail, Policy(routes=(), default=more), {"rules": RulesDecider()}, valuers=KINDS
        )
    ).change == "newly_allowed"


def test_an_event_never_decided_has_no_record_to_compare() -> None:
    assert classify(None, Verdict(allowed=(), denied=())) == "no_record"
