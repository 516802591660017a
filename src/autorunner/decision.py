"""What a decider proposes and what the policy allows: plain values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """One proposed step; ``step_id`` makes the effect key ``"{event_id}:{step_id}"``."""

    step_id: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step_id": self.step_id, "kind": self.kind, "params": self.params}


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """A decider's proposal, with who made it (``decider`` + ``version``) and why."""

    actions: tuple[Action, ...]
    rationale: str
    decider: str
    version: str
    trace: dict[str, Any] | None = None  # an LLM's prompt, model, parameters and raw output

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "actions": [a.to_dict() for a in self.actions],
            "rationale": self.rationale,
            "decider": self.decider,
            "version": self.version,
        }
        if self.trace is not None:
            data["trace"] = self.trace
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Inverse of ``to_dict``."""
        return cls(
            actions=tuple(Action(**a) for a in data["actions"]),
            rationale=data["rationale"],
            decider=data["decider"],
            version=data["version"],
            trace=data.get("trace"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class InvalidProposal:
    """A decider's output that is not a valid ``Decision`` (``errors.InvalidDecision``): kept
    with its reason and the decider's trace; nothing of it is ever executed."""

    reason: str
    decider: str
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"invalid": self.reason, "decider": self.decider, "trace": self.trace}


@dataclass(frozen=True, kw_only=True, slots=True)
class Denied:
    """An action the policy refused, and why."""

    action: Action
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The policy's ruling on a decision: only ``allowed`` actions are ever executed.
    ``refused`` says why there was no decision to rule on (invalid output, no decider)."""

    allowed: tuple[Action, ...]
    denied: tuple[Denied, ...]
    policy_hash: str | None = None
    refused: str | None = None

    def deny(self, step_id: str, reason: str) -> Verdict:
        """This verdict with the allowed action ``step_id`` denied for ``reason``."""
        moved = [a for a in self.allowed if a.step_id == step_id]
        return replace(
            self,
            allowed=tuple(a for a in self.allowed if a.step_id != step_id),
            denied=(*self.denied, *(Denied(action=a, reason=reason) for a in moved)),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "allowed": [a.to_dict() for a in self.allowed],
            "denied": [{"action": d.action.to_dict(), "reason": d.reason} for d in self.denied],
            "policy_hash": self.policy_hash,
        }
        if self.refused is not None:
            data["refused"] = self.refused
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """A recorded verdict read back (also one of the older shapes: ``error`` for a missing
        decider, a denied ``-`` placeholder for an invalid decision)."""
        return cls(
            allowed=tuple(Action(**a) for a in data.get("allowed", ())),
            denied=tuple(
                Denied(action=Action(**d["action"]), reason=d["reason"])
                for d in data.get("denied", ())
            ),
            policy_hash=data.get("policy_hash"),
            refused=data.get("refused") or data.get("error"),
        )
