"""The deterministic default decider: the route's first matching rule, else announce the trigger."""

from __future__ import annotations

from typing import Any

from autorunner.decision import Action, Decision
from autorunner.policy import Route, render, rule_matches, template_values

VERSION = "rules/1"


class RulesDecider:
    """Same envelope and route in, same decision out; no I/O."""

    name = "rules"

    async def decide(
        self, envelope: dict[str, Any], context: dict[str, Any], *, route: Route
    ) -> Decision:
        return decide(envelope, route)


def decide(envelope: dict[str, Any], route: Route) -> Decision:
    """The first rule of ``route`` whose ``when`` matches; the default announcement if none."""
    if not route.rules:
        return decide_default(envelope)
    values = template_values(envelope)
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


def decide_default(envelope: dict[str, Any]) -> Decision:
    """One ``notify`` step whose text names the trigger."""
    trigger = envelope.get("trigger") or {}
    headline = trigger.get("title") or trigger.get("eventType") or "trigger"
    detail = trigger.get("body")
    text = f"{headline}: {detail}" if detail and detail != headline else str(headline)
    if "notify" not in envelope.get("allowedActions", ()):
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
                params={"text": text, "queryId": envelope.get("queryId")},
            ),
        ),
        rationale="default rule: announce every trigger",
        decider="rules",
        version=VERSION,
    )
