"""Deciders: turn an instruction envelope into a ``Decision`` (``rules``, ``llm``)."""

from __future__ import annotations

from typing import Any, Protocol

from autorunner.decision import Decision
from autorunner.envelope import Envelope
from autorunner.policy import Route


class Decider(Protocol):
    """``decide`` proposes actions; the policy, not the decider, rules on them."""

    name: str

    async def decide(
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
    ) -> Decision:
        """Propose actions for one event under ``route``."""
