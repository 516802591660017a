"""The policy file (TOML, ``RUNNER_POLICY``): parsed and validated into ``policy.Policy``.

Every mistake is one ``ConfigError`` line naming the file, the route and the field::

    policy.toml: route 'btc': constraints.max_attempts: Input should be greater than or equal to 1

Shape (every table optional except what a route needs)::

    [default]                      # the route for events no other route matches
    objective = "Handle trigger and notify"
    allowed_actions = ["notify"]

    [[routes]]
    name = "btc"
    match = { symbol = "BTC" }     # event fields: query_id, event_type, symbol, status, … (policy.EVENT_FIELDS)
    objective = "Tell the desk about BTC"
    allowed_actions = ["notify", "exchange"]
    constraints = { max_execution_seconds = 20, max_attempts = 3, risk_mode = "conservative" }
    context = ["query"]            # from Auto before deciding: "query", "llm_session"; [] = none
    approval = { actions = ["exchange"], approvers = ["desk"], above_notional_usd = 200 }
    llm_budget = { per_decision_usd = 0.05, per_day_usd = 5 }   # the llm decider's spend

    [approvers.desk]               # who answers approvals: a Telegram chat, and who in it
    chat_id = -1001234567890
    user_ids = [111111111]         # empty: any member of the chat

    [[routes.rules]]               # rules decider: the first rule whose `when` matches decides
    when = { status = "triggered" }
    actions = [{ step = "notify", kind = "notify", params = { text = "BTC: ${title}" } }]

Templates use ``${name}`` placeholders (``string.Template``: no expressions, no attribute access)
over the trigger's fields; see ``policy.TEMPLATE_FIELDS``.

Nothing fails silently: ``match``, ``when`` and templates name the event's fields in one spelling
(snake_case, ``policy.EVENT_FIELDS``); the older camelCase names (``eventId``, ``eventType``…)
are accepted with a warning naming the new one, anything else is a load error naming the field
and the names there are. So are an unknown action kind and a route matching on the channel,
which would make one execution's decision depend on how it arrived.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autorunner.adapters import KINDS
from autorunner.errors import ConfigError
from autorunner.policy import (
    EVENT_FIELDS,
    TEMPLATE_FIELDS,
    ActionTemplate,
    Approval,
    ApproverGroup,
    Constraints,
    LlmBudget,
    Policy,
    Route,
    Rule,
    default_policy,
)

KNOWN_DECIDERS = frozenset({"rules", "llm"})
LEGACY_NAMES = {
    "eventId": "event_id",
    "queryId": "query_id",
    "executionId": "execution_id",
    "eventType": "event_type",
    "occurredAt": "occurred_at",
}
"""The camelCase names of earlier versions (the envelope's), accepted with a warning."""
DELIVERY_FIELDS = frozenset({"channel", "shape", "delivery_id", "payload", "priority"})
"""How an event arrived, not what it says: a decision may not depend on it."""


def field_problem(name: str) -> str | None:
    """Why ``name`` cannot be matched on, or ``None`` when it is an event field."""
    if name in EVENT_FIELDS:
        return None
    if name in DELIVERY_FIELDS:
        return (
            f"{name!r} says how an event arrived, not what it says: a route cannot depend on it"
            " (one execution gets one decision whichever channel delivers it)"
        )
    return f"{name!r} is not an event field (use one of {', '.join(EVENT_FIELDS)})"


def placeholder_problem(template: str) -> str | None:
    """Why a template string cannot be filled, or ``None``."""
    parsed = string.Template(template)
    if not parsed.is_valid():
        return f"{template!r} is not a valid template (write $$ for a literal $)"
    unknown = [n for n in parsed.get_identifiers() if n not in TEMPLATE_FIELDS]
    if unknown:
        return f"unknown placeholder ${{{unknown[0]}}} (use one of {', '.join(TEMPLATE_FIELDS)})"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstraintsModel(_Strict):
    max_execution_seconds: float = Field(default=30.0, gt=0, le=3600)
    risk_mode: Literal["conservative", "balanced", "aggressive"] = "conservative"
    max_attempts: int = Field(default=5, ge=1, le=100)
    max_notional_usd: float | None = Field(default=None, ge=0)
    live_trading: bool = False
    max_effects_per_hour: int | None = Field(default=None, ge=0)
    max_decision_seconds: float | None = Field(default=None, gt=0, le=3600)


class ApprovalModel(_Strict):
    actions: list[str] = Field(min_length=1)
    approvers: list[str] = Field(min_length=1)
    above_notional_usd: float | None = Field(default=None, ge=0)
    timeout_seconds: float = Field(default=900.0, gt=0, le=7 * 86400)
    on_timeout: Literal["deny", "approve"] = "deny"
    ungated: Literal["wait", "run"] = "wait"


class ApproverGroupModel(_Strict):
    chat_id: int
    user_ids: list[int] = Field(default_factory=list)


class LlmBudgetModel(_Strict):
    per_decision_usd: float | None = Field(default=None, gt=0)
    per_day_usd: float | None = Field(default=None, gt=0)
    per_decision_tokens: int | None = Field(default=None, gt=0)
    per_day_tokens: int | None = Field(default=None, gt=0)
    on_exceeded: Literal["deny", "rules"] = "deny"


class ActionModel(_Strict):
    step: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class RuleModel(_Strict):
    when: dict[str, str] = Field(default_factory=dict)
    actions: list[ActionModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_names(self) -> RuleModel:
        for name in self.when:
            if (problem := field_problem(name)) is not None:
                raise ValueError(f"when: {problem}")
        steps = [action.step for action in self.actions]
        for n, action in enumerate(self.actions, start=1):
            if action.kind not in KINDS:
                raise ValueError(
                    f"actions.{n}.kind: unknown action kind {action.kind!r} (kinds: {', '.join(KINDS)})"
                )
            if action.step in steps[: n - 1]:
                raise ValueError(
                    f"actions.{n}.step: step {action.step!r} is used twice in the rule"
                )
            for where, text in _strings(action.params, f"actions.{n}.params"):
                if (problem := placeholder_problem(text)) is not None:
                    raise ValueError(f"{where}: {problem}")
        return self


class RouteModel(_Strict):
    name: str = Field(default="default", min_length=1)
    match: dict[str, str] = Field(default_factory=dict)
    objective: str = "Handle trigger and notify"
    allowed_actions: list[str] = Field(default_factory=lambda: ["notify"])
    constraints: ConstraintsModel = Field(default_factory=ConstraintsModel)
    decider: str = "rules"
    rules: list[RuleModel] = Field(default_factory=list)
    context: list[Literal["query", "llm_session"]] = ["query", "llm_session"]  # pydantic copies it
    approval: ApprovalModel | None = None
    llm_budget: LlmBudgetModel | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RouteModel:
        if self.decider not in KNOWN_DECIDERS:
            raise ValueError(f"decider {self.decider!r} is not one of {sorted(KNOWN_DECIDERS)}")
        for kind in self.allowed_actions:
            if kind not in KINDS:
                raise ValueError(
                    f"allowed_actions: unknown action kind {kind!r} (kinds: {', '.join(KINDS)})"
                )
        for name in self.match:
            if (problem := field_problem(name)) is not None:
                raise ValueError(f"match: {problem}")
        for n, rule in enumerate(self.rules, start=1):
            for action in rule.actions:
                if action.kind not in self.allowed_actions:
                    raise ValueError(
                        f"rule {n} proposes {action.kind!r}, which allowed_actions does not list"
                    )
        for kind in self.approval.actions if self.approval else []:
            if kind not in self.allowed_actions:
                raise ValueError(
                    f"approval.actions: {kind!r} is not in allowed_actions: nothing to gate"
                )
        return self


class PolicyModel(_Strict):
    default: RouteModel = Field(default_factory=RouteModel)
    routes: list[RouteModel] = Field(default_factory=list)
    approvers: dict[str, ApproverGroupModel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyModel:
        names = [r.name for r in self.routes]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"route name {name!r} is used twice")
        for route in [self.default, *self.routes]:
            for group in route.approval.approvers if route.approval else []:
                if group not in self.approvers:
                    raise ValueError(
                        f"route {route.name!r}: approval.approvers: no [approvers.{group}] table"
                        f" (defined: {', '.join(sorted(self.approvers)) or 'none'})"
                    )
        return self


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; ``ConfigError`` (one line) on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, *, source: str = "the policy") -> Policy:
    """Validate a policy's TOML text (a file's, or one pasted in the console); ``ConfigError``
    (one line, naming ``source``) on any problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    warnings = [f"{source}: {w}" for w in modernize(raw)]
    try:
        model = PolicyModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, raw)}") from exc
    return Policy(
        routes=tuple(_route(r) for r in model.routes),
        default=_route(model.default),
        warnings=tuple(warnings),
        source=source,
        approvers=tuple(
            ApproverGroup(name=name, chat_id=g.chat_id, user_ids=tuple(g.user_ids))
            for name, g in sorted(model.approvers.items())
        ),
    )


def modernize(raw: dict[str, Any]) -> list[str]:
    """Rename the old camelCase field names in ``raw`` (in place); one warning line for each."""
    warnings: list[str] = []
    found = raw.get("routes")
    routes: list[Any] = found if isinstance(found, list) else []
    entries = [("default route", raw.get("default"))] + [
        (f"route {r.get('name', f'#{n + 1}')!r}" if isinstance(r, dict) else "", r)
        for n, r in enumerate(routes)
    ]
    for where, route in entries:
        if not isinstance(route, dict):
            continue
        tables = [("match", route)] + [
            ("when", rule) for rule in route.get("rules") or [] if isinstance(rule, dict)
        ]
        for key, holder in tables:
            names = holder.get(key)
            if isinstance(names, dict):
                for old in [n for n in names if n in LEGACY_NAMES]:
                    names[LEGACY_NAMES[old]] = names.pop(old)
                    warnings.append(f"{where}: {key}.{old} is now {LEGACY_NAMES[old]}")
        for rule in route.get("rules") or []:
            for action in (rule.get("actions") or []) if isinstance(rule, dict) else []:
                if isinstance(action, dict) and "params" in action:
                    action["params"] = _rename_placeholders(action["params"], where, warnings)
    return warnings


def _rename_placeholders(value: Any, where: str, warnings: list[str]) -> Any:
    if isinstance(value, str):
        for old, new in LEGACY_NAMES.items():
            for form in (f"${{{old}}}", f"${old}"):
                if form in value:
                    value = value.replace(form, f"${{{new}}}")
                    warnings.append(f"{where}: placeholder {form} is now ${{{new}}}")
        return value
    if isinstance(value, dict):
        return {k: _rename_placeholders(v, where, warnings) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_placeholders(v, where, warnings) for v in value]
    return value


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    """Every string inside ``value``, with its dotted place."""
    if isinstance(value, str):
        return [(where, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [s for n, v in enumerate(value) for s in _strings(v, f"{where}.{n}")]
    return []


def policy_from_settings(
    path: str | None, *, max_execution_seconds: float, max_attempts: int
) -> Policy:
    """The file's policy when ``RUNNER_POLICY`` is set, else the built-in default."""
    if path:
        return load_policy(path)
    return default_policy(max_execution_seconds=max_execution_seconds, max_attempts=max_attempts)


def _route(model: RouteModel) -> Route:
    c = model.constraints
    return Route(
        name=model.name,
        objective=model.objective,
        allowed_actions=tuple(model.allowed_actions),
        constraints=Constraints(
            max_execution_seconds=c.max_execution_seconds,
            risk_mode=c.risk_mode,
            max_attempts=c.max_attempts,
            max_notional_usd=c.max_notional_usd,
            live_trading=c.live_trading,
            max_effects_per_hour=c.max_effects_per_hour,
            max_decision_seconds=c.max_decision_seconds,
        ),
        decider=model.decider,
        approval=None
        if model.approval is None
        else Approval(
            actions=tuple(model.approval.actions),
            approvers=tuple(model.approval.approvers),
            above_notional_usd=model.approval.above_notional_usd,
            timeout_seconds=model.approval.timeout_seconds,
            on_timeout=model.approval.on_timeout,
            ungated=model.approval.ungated,
        ),
        llm_budget=None if model.llm_budget is None else LlmBudget(**model.llm_budget.model_dump()),
        match=dict(model.match),
        context=tuple(sorted(set(model.context))),
        rules=tuple(
            Rule(
                when=dict(rule.when),
                actions=tuple(
                    ActionTemplate(step=a.step, kind=a.kind, params=a.params) for a in rule.actions
                ),
            )
            for rule in model.rules
        ),
    )


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = ""
    if loc[:1] == ["routes"] and len(loc) > 1 and isinstance(loc[1], int):
        routes = raw.get("routes") or []
        entry = routes[loc[1]] if loc[1] < len(routes) and isinstance(routes[loc[1]], dict) else {}
        where = f"route {entry.get('name', f'#{loc[1] + 1}')!r}: "
        loc = loc[2:]
    elif loc[:1] == ["default"]:
        where = "default route: "
        loc = loc[1:]
    # Lists are counted from 1, as people count rules and actions (``rules.1.actions.2``).
    field = ".".join(str(part + 1) if isinstance(part, int) else str(part) for part in loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}{field + ': ' if field else ''}{message}"
