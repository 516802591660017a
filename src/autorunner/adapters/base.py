"""The ``Adapter`` seam: perform one allowed action, idempotently keyed by its effect key.

Raise ``TransientError`` for failures worth retrying and ``PermanentError`` for the rest.
``delivery`` says what the ledger does with an effect a crash left half-done: ``at_most_once``
marks it unknown and never resends it; ``at_least_once`` performs it again.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from autorunner.decision import Action
from autorunner.events import Event

Delivery = Literal["at_most_once", "at_least_once"]


class Adapter(Protocol):
    """One kind of effect."""

    kind: str
    delivery: Delivery

    async def execute(self, action: Action, *, effect_key: str, event: Event) -> dict[str, Any]:
        """Perform ``action``; return a JSON-able result for the ledger."""
