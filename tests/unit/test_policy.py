"""Policy: the envelope, route matching, the verdict and the policy hash (pure)."""

from __future__ import annotations

from autorunner.deciders.rules import announce
from autorunner.decision import Action, Decision
from autorunner.envelope import build_envelope
from autorunner.policy import Constraints, Policy, Route, check, default_policy
from tests.helpers import kinds, make_event

NOTIFY_ONLY = Route(name="r", objective="o", allowed_actions=("notify",))


def decision(*actions: Action) -> Decision:
    return Decision(actions=actions, rationale="test", decider="rules", version="t")


def test_envelope_follows_the_runner_guide_contract() -> None:
    envelope = build_envelope(make_event("evt_123"), default_policy().default).to_dict()
    assert envelope["route"] == "default"
    assert envelope["eventId"] == "evt_123"
    assert envelope["queryId"] == "q-1"
    assert envelope["objective"] == "Handle trigger and notify"
    assert envelope["allowedActions"] == ["notify"]
    assert envelope["constraints"] == {
        "maxExecutionSeconds": 30.0,
        "riskMode": "conservative",
        "maxAttempts": 5,
        "maxNotionalUsd": None,
    }


def test_actions_outside_the_route_are_denied_with_a_reason() -> None:
    verdict = check(
        decision(Action(step_id="a", kind="notify"), Action(step_id="b", kind="exchange")),
        NOTIFY_ONLY,
        policy_hash="h",
        valuers=kinds("notify", "exchange"),
    )
    assert [a.step_id for a in verdict.allowed] == ["a"]
    assert [(d.action.step_id, d.reason) for d in verdict.denied] == [
        ("b", "action 'exchange' not allowed by route 'r'")
    ]


def test_actions_without_an_adapter_or_with_a_repeated_step_are_denied() -> None:
    route = Route(name="r", objective="o", allowed_actions=("notify", "telegram"))
    verdict = check(
        decision(
            Action(step_id="a", kind="telegram"),
            Action(step_id="n", kind="notify"),
            Action(step_id="n", kind="notify"),
        ),
        route,
        policy_hash="h",
        valuers=kinds("notify"),
    )
    assert [a.step_id for a in verdict.allowed] == ["n"]
    assert [d.reason for d in verdict.denied] == [
        "no adapter for action 'telegram'",
        "duplicate step id 'n'",
    ]


def test_first_matching_route_wins_else_default() -> None:
    special = Route(name="btc", objective="o", allowed_actions=("notify",), match={"symbol": "BTC"})
    policy = Policy(routes=(special,), default=NOTIFY_ONLY)
    assert policy.route_for(make_event(symbol="BTC")).name == "btc"
    assert policy.route_for(make_event(symbol="ETH")).name == "r"


def test_policy_hash_is_stable_and_changes_with_content() -> None:
    # Pinned: the hash is recorded with every decision, so a change to how it is computed
    # would make every recorded run name a policy that no longer hashes to it.
    assert default_policy().hash == "sha256:6abceaf101b8aca3"
    stricter = Policy(
        routes=(),
        default=Route(
            name="default",
            objective="o",
            allowed_actions=(),
            constraints=Constraints(max_attempts=1),
        ),
    )
    assert stricter.hash != default_policy().hash


def test_default_rule_announces_title_and_body() -> None:
    envelope = build_envelope(make_event(), default_policy().default)
    proposed = announce(envelope)
    assert [(a.step_id, a.kind, a.params["text"]) for a in proposed.actions] == [
        ("notify", "notify", "BTC above 100k: BTC crossed 100000")
    ]
    assert proposed.version == "rules/1"


def test_default_rule_proposes_nothing_when_notify_is_not_allowed() -> None:
    route = Route(name="quiet", objective="o", allowed_actions=())
    assert announce(build_envelope(make_event(), route)).actions == ()
