"""What a decider proposes and what the policy allows: plain values, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """One proposed step; ``step_id`` makes the effect key ``"{event_id}:{step_id}"``."""

    step_id: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """A decider's proposal, with who made it (``decider`` + ``version``) and why."""

    actions: tuple[Action, ...]
    rationale: str
    decider: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Denied:
    """An action the policy refused, and why."""

    action: Action
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The policy's ruling on a decision: only ``allowed`` actions are ever executed."""

    allowed: tuple[Action, ...]
    denied: tuple[Denied, ...]
    policy_hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
