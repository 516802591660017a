"""Deciders: turn an instruction envelope into a ``Decision`` (``rules``; ``llm`` later)."""

from __future__ import annotations

from typing import Any, Protocol

from autorunner.decision import Decision


class Decider(Protocol):
    """``decide`` proposes actions; the policy, not the decider, rules on them."""

    name: str

    async def decide(self, envelope: dict[str, Any], context: dict[str, Any]) -> Decision:
        """Propose actions for one event."""
