"""The ``relay`` adapter: forward the canonical event to another service, signed per Standard Webhooks.

Decisions name a target (``params.target``) that the operator mapped to a URL
(``RELAY_TARGETS="desk=https://…"``). The body is the event in the canonical (version 1.0)
shape; headers are ``webhook-id`` (the effect key, so the receiver can de-duplicate),
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC>`` keyed by ``RELAY_SECRET``
(``whsec_…`` base64 or raw). Retryable and permanent failures as for the ``http`` adapter.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from autorunner.adapters.base import DeliveryMode, Sending, post
from autorunner.decision import Action
from autorunner.errors import PermanentError
from autorunner.events import Event
from autorunner.notional import no_money_with
from autorunner.signatures import sign_standard


def canonical(event: Event) -> dict[str, Any]:
    """The event in Auto's documented canonical shape."""
    return {
        "version": "1.0",
        "eventType": event.event_type,
        "eventId": event.event_id,
        "timestamp": event.occurred_at,
        "queryId": event.query_id,
        "executionId": event.execution_id,
        "channel": event.channel,
        "status": event.status,
        "title": event.title,
        "body": event.body,
        "trigger": {"symbol": event.symbol},
        "payload": event.payload,
    }


class RelayAdapter:
    """POSTs the canonical event to ``targets[params.target]``."""

    kind = "relay"
    waits_to_send = False
    notional = staticmethod(no_money_with("relay", frozenset({"target"})))
    delivery: DeliveryMode = "at_least_once"

    def __init__(
        self,
        *,
        http: httpx2.AsyncClient,
        targets: Mapping[str, str],
        secret: str,
        timeout: float = 10.0,
    ) -> None:
        self._http = http
        self._targets = dict(targets)
        self._secret = secret
        self._timeout = timeout

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        name = action.params.get("target")
        url = self._targets.get(str(name))
        if url is None:
            raise PermanentError(f"relay target {name!r} is not configured (RELAY_TARGETS)")
        body = orjson.dumps(canonical(event))
        ts = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "webhook-id": effect_key,
            "webhook-timestamp": ts,
            "webhook-signature": sign_standard(
                self._secret, msg_id=effect_key, timestamp=ts, body=body
            ),
        }
        await sending()
        response = await post(
            self._http,
            url,
            body=body,
            headers=headers,
            seconds=self._timeout,
            target=f"relay target {name!r}",
        )
        return {"status": response.status_code, "target": name}
