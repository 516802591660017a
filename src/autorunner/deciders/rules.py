"""The deterministic default decider: announce the trigger through ``notify``."""

from __future__ import annotations

from typing import Any

from autorunner.decision import Action, Decision

VERSION = "rules/1"


class RulesDecider:
    """Same envelope in, same decision out; no I/O."""

    name = "rules"

    async def decide(self, envelope: dict[str, Any], context: dict[str, Any]) -> Decision:
        return decide_default(envelope)


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
