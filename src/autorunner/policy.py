"""Routes and the hard limits that turn a decision into a verdict (pure).

This is the default policy shape; the policy file (TOML, routes matched on event fields) builds
the same values. Every decision is checked here before any effect, and the policy's content hash
is recorded with it.
"""

from __future__ import annotations

import functools
import hashlib
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from autorunner.decision import Action, Decision, Denied, Verdict
from autorunner.events import Event
from autorunner.notional import Valuer, over_cap

RiskMode = Literal["conservative", "balanced", "aggressive"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Constraints:
    """Hard limits of a route."""

    max_execution_seconds: float = 30.0
    risk_mode: RiskMode = "conservative"
    max_attempts: int = 5
    max_notional_usd: float | None = None
    live_trading: bool = False
    max_effects_per_hour: int | None = None
    max_decision_seconds: float | None = None
    """How long deciding may take (the model's calls, retries included); past it the
    decision is denied. ``None``: bounded by ``max_execution_seconds`` only."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ActionTemplate:
    """An action a rule proposes; string params may hold ``${field}`` placeholders."""

    step: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """When every ``when`` field equals the trigger's, propose ``actions``."""

    when: dict[str, str] = field(default_factory=dict)
    actions: tuple[ActionTemplate, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Approval:
    """Which of a route's allowed actions wait for a person, and what a silence means.

    An action of a kind in ``actions`` is gated when ``above_notional_usd`` is ``None``, or its
    notional exceeds it, or its notional cannot be told (fail closed). ``ungated``: the other
    actions of the same decision ``wait`` for the answer too, or ``run`` at once."""

    actions: tuple[str, ...]
    approvers: tuple[str, ...]
    above_notional_usd: float | None = None
    timeout_seconds: float = 900.0
    on_timeout: Literal["deny", "approve"] = "deny"
    ungated: Literal["wait", "run"] = "wait"


@dataclass(frozen=True, kw_only=True, slots=True)
class ApproverGroup:
    """People who may answer an approval: requests go to ``chat_id``; an answer there counts
    when its sender is one of ``user_ids`` (any member of the chat when empty)."""

    name: str
    chat_id: int
    user_ids: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class LlmBudget:
    """What a route's model may spend: per decision and per UTC day, in USD and in tokens."""

    per_decision_usd: float | None = None
    per_day_usd: float | None = None
    per_decision_tokens: int | None = None
    per_day_tokens: int | None = None
    on_exceeded: Literal["deny", "rules"] = "deny"
    """Over budget: a denied verdict, or the route's rules decide instead."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """Events matching ``match`` (field name → required value) are handled under these limits."""

    name: str
    objective: str
    allowed_actions: tuple[str, ...]
    constraints: Constraints = field(default_factory=Constraints)
    decider: str = "rules"
    match: dict[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    context: tuple[str, ...] = ("llm_session", "query")
    """What to fetch from Auto before deciding (``context.CONTEXT_PARTS``); empty: nothing."""
    approval: Approval | None = None
    llm_budget: LlmBudget | None = None

    def matches(self, event: Event) -> bool:
        return all(str(getattr(event, name, None)) == value for name, value in self.match.items())


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Routes in order; the first match wins, ``default`` otherwise. ``warnings`` are what the
    file's loader noticed but accepted (an old spelling of a field), one line each."""

    routes: tuple[Route, ...]
    default: Route
    approvers: tuple[ApproverGroup, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    source: str | None = field(default=None, compare=False)
    """The file it was read from (``None``: the built-in policy), for messages."""

    @functools.cached_property
    def hash(self) -> str:
        """Content hash stored with every decision, so a run names the policy it ran under."""
        content: dict[str, Any] = {
            "routes": [_content(r) for r in self.routes],
            "default": _content(self.default),
        }
        if self.approvers:  # absent from older policies' content: their hash stays the same
            content["approvers"] = [asdict(g) for g in self.approvers]
        text = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(text).hexdigest()[:16]

    def route_for(self, event: Event) -> Route:
        return next((r for r in self.routes if r.matches(event)), self.default)

    def approver_group(self, name: str) -> ApproverGroup | None:
        return next((g for g in self.approvers if g.name == name), None)


def _content(route: Route) -> dict[str, Any]:
    """A route's content for the hash; a gate, a budget or a decision time limit counts only
    when there is one, so a policy without them hashes as it did before they existed."""
    content = asdict(route)
    for name in ("approval", "llm_budget"):
        if content[name] is None:
            del content[name]
    if content["constraints"]["max_decision_seconds"] is None:
        del content["constraints"]["max_decision_seconds"]
    return content


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


def check(
    decision: Decision, route: Route, *, policy_hash: str, valuers: Mapping[str, Valuer]
) -> Verdict:
    """Allow each proposed action only if the route allows its kind, an adapter exists for it
    (``valuers`` holds one valuer per configured adapter kind) and its notional keeps within the
    route's cap by that kind's contract (``notional``): fail closed when it cannot be told."""
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
        elif action.kind not in valuers:
            denied.append(Denied(action=action, reason=f"no adapter for action {action.kind!r}"))
        elif (
            reason := over_cap(
                valuers[action.kind](action.params), route.constraints.max_notional_usd
            )
        ) is not None:
            denied.append(Denied(action=action, reason=reason))
        elif action.params.get("mode") == "live" and not route.constraints.live_trading:
            denied.append(
                Denied(
                    action=action, reason=f"live trading is not enabled for route {route.name!r}"
                )
            )
        else:
            allowed.append(action)
        seen.add(action.step_id)
    return Verdict(allowed=tuple(allowed), denied=tuple(denied), policy_hash=policy_hash)


EVENT_FIELDS = (
    "event_id",
    "query_id",
    "execution_id",
    "event_type",
    "status",
    "title",
    "body",
    "symbol",
    "occurred_at",
)
"""The event's fields, named the same in ``match``, in a rule's ``when`` and in templates."""
TEMPLATE_FIELDS = (*EVENT_FIELDS, "route", "objective")
"""What a ``${name}`` placeholder may name: the event's fields and the route's."""


def render(value: Any, values: dict[str, str]) -> Any:
    """Fill ``${name}`` placeholders in every string inside ``value`` (no expressions, ever)."""
    if isinstance(value, str):
        return string.Template(value).safe_substitute(values)
    if isinstance(value, dict):
        return {k: render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, values) for v in value]
    return value


def rule_matches(rule: Rule, values: dict[str, str]) -> bool:
    return all(values.get(name) == wanted for name, wanted in rule.when.items())
