"""Sign and send events exactly as Auto does (``send-test-event`` and the ``serve --demo`` sender)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
import orjson

from autorunner import signatures


def sample_event(
    *, event_id: str, execution_id: str | None = None, symbol: str = "BTC"
) -> dict[str, Any]:
    """A canonical (version 1.0) trigger body like the one in Auto's docs."""
    body: dict[str, Any] = {
        "version": "1.0",
        "eventType": "query.triggered",
        "eventId": event_id,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "queryId": str(uuid.uuid4()),
        "channel": "webhook",
        "title": f"{symbol} price alert",
        "trigger": {"symbol": symbol, "reason": f"{symbol} price > threshold"},
        "evaluation": {"triggered": True},
        "action": {"type": "webhook"},
    }
    if execution_id is not None:
        body["executionId"] = execution_id
    return body


def signed_headers(
    secret: str, body: bytes, *, event_id: str, timestamp: int | None = None, legacy: bool = False
) -> dict[str, str]:
    """The Elfa ``v1`` header set for ``body``."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "content-type": "application/json",
        "x-auto-event-id": event_id,
        "x-auto-signature-timestamp": ts,
        "x-auto-signature": signatures.sign_elfa(
            secret, timestamp=ts, event_id=event_id, body=body, legacy=legacy
        ),
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """What the runner answered."""

    status: int
    body: dict[str, Any]


async def send_event(
    client: httpx2.AsyncClient,
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    event_id: str,
    legacy: bool = False,
) -> Reply:
    """POST one signed event; connection errors propagate as ``httpx2.TransportError``."""
    raw = orjson.dumps(payload)
    response = await client.post(
        url, content=raw, headers=signed_headers(secret, raw, event_id=event_id, legacy=legacy)
    )
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text}
    return Reply(
        status=response.status_code, body=body if isinstance(body, dict) else {"value": body}
    )
