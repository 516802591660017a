"""The ``notify`` adapter: a structured log line (the console in ``serve``)."""

from __future__ import annotations

from typing import Any

import structlog

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.decision import Action
from autorunner.events import Event
from autorunner.notional import moves_no_money

log = structlog.get_logger("autorunner.notify")


class NotifyAdapter:
    """Announce an action's ``text``; the line carries the effect key for audits."""

    kind = "notify"
    waits_to_send = False
    notional = staticmethod(moves_no_money)
    delivery: DeliveryMode = "at_most_once"

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        text = str(action.params.get("text", ""))
        await sending()
        log.info(
            "effect.notify", event_id=effect_key.rsplit(":", 1)[0], effect_key=effect_key, text=text
        )
        return {"delivered": True, "chars": len(text)}
