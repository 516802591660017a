"""Routes, the instruction envelope and the hard limits that turn a decision into a verdict (pure).

This is the default policy shape; the policy file (TOML, routes matched on event fields) builds
the same values. Every decision is checked here before any effect, and the policy's content hash
is recorded with it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from autorunner.decision import Action, Decision, Denied, Verdict
from autorunner.events import Event

RiskMode = Literal["conservative", "balanced", "aggressive"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Constraints:
    """Hard limits of a route."""

    max_execution_seconds: float = 30.0
    risk_mode: RiskMode = "conservative"
    max_attempts: int = 5


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """Events matching ``match`` (field name → required value) are handled under these limits."""

    name: str
    objective: str
    allowed_actions: tuple[str, ...]
    constraints: Constraints = field(default_factory=Constraints)
    decider: str = "rules"
    match: dict[str, str] = field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        fields = event.to_dict()
        return all(str(fields.get(name)) == value for name, value in self.match.items())


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Routes in order; the first match wins, ``default`` otherwise."""

    routes: tuple[Route, ...]
    default: Route

    @functools.cached_property
    def hash(self) -> str:
        """Content hash stored with every decision, so a run names the policy it ran under."""
        text = orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(text).hexdigest()[:16]

    def route_for(self, event: Event) -> Route:
        return next((r for r in self.routes if r.matches(event)), self.default)


def default_policy(*, max_execution_seconds: float = 30.0, max_attempts: int = 5) -> Policy:
    """The built-in policy: every event is announced through ``notify`` and nothing else."""
    return Policy(
        routes=(),
        default=Route(
            name="default",
            objective="Handle trigger and notify",
            allowed_actions=("notify",),
            constraints=Constraints(
                max_execution_seconds=max_execution_seconds, max_attempts=max_attempts
            ),
        ),
    )


def build_envelope(event: Event, route: Route) -> dict[str, Any]:
    """The structured instruction of Elfa's runner guide, extended with the trigger's facts."""
    return {
        "eventId": event.event_id,
        "queryId": event.query_id,
        "executionId": event.execution_id,
        "objective": route.objective,
        "allowedActions": list(route.allowed_actions),
        "constraints": {
            "maxExecutionSeconds": route.constraints.max_execution_seconds,
            "riskMode": route.constraints.risk_mode,
            "maxAttempts": route.constraints.max_attempts,
        },
        "trigger": {
            "eventType": event.event_type,
            "status": event.status,
            "title": event.title,
            "body": event.body,
            "symbol": event.symbol,
            "occurredAt": event.occurred_at,
            "channel": event.channel,
        },
    }


def check(
    decision: Decision, route: Route, *, policy_hash: str, known_kinds: frozenset[str]
) -> Verdict:
    """Allow each proposed action only if the route allows its kind and an adapter exists for it."""
    allowed: list[Action] = []
    denied: list[Denied] = []
    seen: set[str] = set()
    for action in decision.actions:
        if action.step_id in seen:
            denied.append(Denied(action=action, reason=f"duplicate step id {action.step_id!r}"))
        elif action.kind not in route.allowed_actions:
            denied.append(
                Denied(
                    action=action,
                    reason=f"action {action.kind!r} not allowed by route {route.name!r}",
                )
            )
        elif action.kind not in known_kinds:
            denied.append(Denied(action=action, reason=f"no adapter for action {action.kind!r}"))
        else:
            allowed.append(action)
        seen.add(action.step_id)
    return Verdict(allowed=tuple(allowed), denied=tuple(denied), policy_hash=policy_hash)
