"""What the simulator sends, as bytes (pure): stream frames in versions A, B and C, and webhook
bodies in both documented shapes.

Kept apart from the simulator's routes so the wire formats of auto-contract §3 and §4 read in
one place. Like Auto, each carries different texts for one execution: the canonical body and
frame A the trigger's reason, a notification (webhook or frame B) its own title and body, frame
C the alert title with the query's title beside it. The simulator also names the execution in
every one of them (a documented notification body names only the query).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

FrameVersion = Literal["A", "B", "C"]
WebhookShape = Literal["canonical", "notification"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Firing:
    """One trigger of a query, as every channel describes it."""

    query_id: str
    title: str
    """The query's title."""
    text: str
    """What the alert says (the trigger's reason)."""
    execution: dict[str, Any]
    symbol: str | None = None


def stream_frame(version: FrameVersion, firing: Firing) -> bytes:
    """One SSE frame announcing ``firing``, in the given frame version."""
    execution = firing.execution
    if version == "A":
        data = canonical_body(firing, channel="sse")
        head = f"event: query.triggered\nid: {data['eventId']}\n"
    elif version == "B":
        number = random.randint(1, 2**31)  # noqa: S311 - an id, not a secret
        data = notification_body(firing, number)
        head = f"event: notification:new\nid: {number}\n"
    else:
        data = {
            "status": "triggered",
            "title": "Auto Plan Alert",
            "body": firing.text,
            "message": firing.text,
            "queryId": firing.query_id,
            "queryTitle": firing.title,
            "executionId": execution["id"],
            "triggerTime": execution["createdAt"],
            "conditionsMet": 1,
            "timestamp": int(time.time() * 1000),
        }
        if firing.symbol:
            data["symbol"] = firing.symbol
        head = f"event: notification\nid: {uuid.uuid4()}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def end_frame(*, query_id: str, status: str) -> bytes:
    """The frame that closes a query's stream."""
    data = orjson.dumps({"code": "QUERY_STREAM_CLOSED", "status": status, "queryId": query_id})
    return b"event: end\ndata: " + data + b"\n\n"


def webhook_body(shape: WebhookShape, firing: Firing) -> tuple[str, bytes]:
    """The ``X-Auto-Event-Id`` and body of the webhook announcing ``firing``."""
    if shape == "notification":
        number = random.randint(1, 2**31)  # noqa: S311 - an id, not a secret
        return str(number), orjson.dumps(notification_body(firing, number))
    body = canonical_body(firing, channel="webhook")
    return str(body["eventId"]), orjson.dumps(body)


def canonical_body(firing: Firing, *, channel: str) -> dict[str, Any]:
    """The canonical (1.0) event."""
    trigger: dict[str, Any] = {"reason": firing.text}
    if firing.symbol:
        trigger["symbol"] = firing.symbol
    return {
        "version": "1.0",
        "eventType": "query.triggered",
        "eventId": f"evt_{firing.execution['id']}",
        "timestamp": firing.execution["createdAt"],
        "queryId": firing.query_id,
        "channel": channel,
        "executionId": firing.execution["id"],
        "trigger": trigger,
        "evaluation": {"triggered": True},
        "action": {"type": "webhook"},
    }


def notification_body(firing: Firing, number: int) -> dict[str, Any]:
    """The notification shape (webhook body and frame B)."""
    data: dict[str, Any] = {"queryId": firing.query_id, "executionId": firing.execution["id"]}
    if firing.symbol:
        data["symbol"] = firing.symbol
    return {
        "id": number,
        "type": "athena_query_notify_only",
        "category": "alerts",
        "title": f"Query triggered: {firing.title}",
        "body": firing.text,
        "data": data,
        "priority": "high",
        "createdAt": firing.execution["createdAt"],
    }
