"""The instruction envelope a decider receives: the structured instruction of Elfa's runner
guide, extended with the trigger's facts (pure).

Nothing in it depends on the channel that delivered the event (``facts``): one execution gets
one envelope, and so one decision, by webhook, stream or poll. It is typed until a run record
keeps it; ``to_dict`` is the form recorded and shown to a model (the guide's camelCase keys),
``from_dict`` reads a recorded one back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autorunner.events import Event
from autorunner.policy import Route


@dataclass(frozen=True, kw_only=True, slots=True)
class Trigger:
    """What fired, as the decision sees it."""

    event_type: str | None = None
    status: str | None = None
    title: str | None = None
    body: str | None = None
    symbol: str | None = None
    occurred_at: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """The route's hard limits a decider is told of."""

    max_execution_seconds: float | None = None
    risk_mode: str | None = None
    max_attempts: int | None = None
    max_notional_usd: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Envelope:
    """One event's instruction under one route."""

    route: str
    event_id: str
    query_id: str | None
    execution_id: str | None
    objective: str
    allowed_actions: tuple[str, ...]
    constraints: Limits = field(default_factory=Limits)
    trigger: Trigger = field(default_factory=Trigger)

    @classmethod
    def build(cls, event: Event, route: Route) -> Envelope:
        """``event``'s envelope under ``route``."""
        limits = route.constraints
        return cls(
            route=route.name,
            event_id=event.event_id,
            query_id=event.query_id,
            execution_id=event.execution_id,
            objective=route.objective,
            allowed_actions=tuple(route.allowed_actions),
            constraints=Limits(
                max_execution_seconds=limits.max_execution_seconds,
                risk_mode=limits.risk_mode,
                max_attempts=limits.max_attempts,
                max_notional_usd=limits.max_notional_usd,
            ),
            trigger=Trigger(
                event_type=event.event_type,
                status=event.status,
                title=event.title,
                body=event.body,
                symbol=event.symbol,
                occurred_at=event.occurred_at,
            ),
        )

    def template_values(self) -> dict[str, str]:
        """The flat namespace of a rule's ``when`` and ``${name}`` templates."""
        t = self.trigger
        values = {
            "event_id": self.event_id,
            "query_id": self.query_id,
            "execution_id": self.execution_id,
            "event_type": t.event_type,
            "status": t.status,
            "title": t.title,
            "body": t.body,
            "symbol": t.symbol,
            "occurred_at": t.occurred_at,
            "route": self.route,
            "objective": self.objective,
        }
        return {k: "" if v is None else str(v) for k, v in values.items()}

    def to_dict(self) -> dict[str, Any]:
        """The recorded form, in the runner guide's spelling."""
        c, t = self.constraints, self.trigger
        return {
            "route": self.route,
            "eventId": self.event_id,
            "queryId": self.query_id,
            "executionId": self.execution_id,
            "objective": self.objective,
            "allowedActions": list(self.allowed_actions),
            "constraints": {
                "maxExecutionSeconds": c.max_execution_seconds,
                "riskMode": c.risk_mode,
                "maxAttempts": c.max_attempts,
                "maxNotionalUsd": c.max_notional_usd,
            },
            "trigger": {
                "eventType": t.event_type,
                "status": t.status,
                "title": t.title,
                "body": t.body,
                "symbol": t.symbol,
                "occurredAt": t.occurred_at,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """A recorded envelope read back (missing fields of older records are ``None``)."""
        c = data.get("constraints") or {}
        t = data.get("trigger") or {}
        return cls(
            route=str(data.get("route") or ""),
            event_id=str(data.get("eventId") or ""),
            query_id=data.get("queryId"),
            execution_id=data.get("executionId"),
            objective=str(data.get("objective") or ""),
            allowed_actions=tuple(data.get("allowedActions") or ()),
            constraints=Limits(
                max_execution_seconds=c.get("maxExecutionSeconds"),
                risk_mode=c.get("riskMode"),
                max_attempts=c.get("maxAttempts"),
                max_notional_usd=c.get("maxNotionalUsd"),
            ),
            trigger=Trigger(
                event_type=t.get("eventType"),
                status=t.get("status"),
                title=t.get("title"),
                body=t.get("body"),
                symbol=t.get("symbol"),
                occurred_at=t.get("occurredAt"),
            ),
        )


build_envelope = Envelope.build
