"""The deterministic default decider: the route's first matching rule, else announce the trigger."""

from __future__ import annotations

from typing import Any

from autorunner.decision import Action, Decision
from autorunner.envelope import Envelope
from autorunner.policy import Route, render, rule_matches

VERSION = "rules/1"


class RulesDecider:
    """Same envelope and route in, same decision out; no I/O."""

    name = "rules"

    async def decide(
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
    ) -> Decision:
        return first_rule(envelope, route)


def first_rule(envelope: Envelope, route: Route) -> Decision:
    """The first rule of ``route`` whose ``when`` matches; the default announcement if none."""
    if not route.rules:
        return announce(envelope)
    values = envelope.template_values()
    for number, rule in enumerate(route.rules, start=1):
        if rule_matches(rule, values):
            actions = tuple(
                Action(step_id=a.step, kind=a.kind, params=render(a.params, values))
                for a in rule.actions
            )
            return Decision(
                actions=actions,
                rationale=f"rule {number} of route {route.name!r}",
                decider="rules",
                version=VERSION,
            )
    return Decision(
        actions=(),
        rationale=f"no rule of route {route.name!r} matched",
        decider="rules",
        version=VERSION,
    )


def announce(envelope: Envelope) -> Decision:
    """One ``notify`` step whose text names the trigger."""
    trigger = envelope.trigger
    headline = trigger.title or trigger.event_type or "trigger"
    detail = trigger.body
    text = f"{headline}: {detail}" if detail and detail != headline else str(headline)
    if "notify" not in envelope.allowed_actions:
        return Decision(
            actions=(),
            rationale="notify not allowed: nothing to do",
            decider="rules",
            version=VERSION,
        )
    return Decision(
        actions=(
            Action(
                step_id="notify",
                kind="notify",
                params={"text": text, "queryId": envelope.query_id},
            ),
        ),
        rationale="default rule: announce every trigger",
        decider="rules",
        version=VERSION,
    )
