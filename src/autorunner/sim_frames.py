"""What the simulator sends, as bytes (pure): stream frames in versions A, B and C, webhook bodies.

Kept apart from the simulator's routes so the wire formats of auto-contract §3 and §4 read in
one place.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Literal

import orjson

FrameVersion = Literal["A", "B", "C"]


def stream_frame(
    version: FrameVersion, *, query_id: str, title: str, execution: dict[str, Any]
) -> bytes:
    """One SSE frame announcing ``execution``, in the given frame version."""
    if version == "A":
        data: dict[str, Any] = {
            "version": "1.0",
            "eventType": "query.triggered",
            "eventId": f"evt_{execution['id']}",
            "timestamp": execution["createdAt"],
            "queryId": query_id,
            "channel": "sse",
            "executionId": execution["id"],
            "trigger": {"reason": title},
        }
        head = f"event: query.triggered\nid: {data['eventId']}\n"
    elif version == "B":
        number = random.randint(1, 2**31)  # noqa: S311 - an id, not a secret
        data = {
            "id": number,
            "type": "athena_query_notify_only",
            "title": title,
            "body": title,
            "data": {"queryId": query_id, "executionId": execution["id"]},
            "createdAt": execution["createdAt"],
        }
        head = f"event: notification:new\nid: {number}\n"
    else:
        data = {
            "status": "triggered",
            "title": title,
            "body": title,
            "queryId": query_id,
            "executionId": execution["id"],
            "triggerTime": execution["createdAt"],
            "conditionsMet": 1,
            "timestamp": int(time.time() * 1000),
        }
        head = f"event: notification\nid: {uuid.uuid4()}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def end_frame(*, query_id: str, status: str) -> bytes:
    """The frame that closes a query's stream."""
    data = orjson.dumps({"code": "QUERY_STREAM_CLOSED", "status": status, "queryId": query_id})
    return b"event: end\ndata: " + data + b"\n\n"


def webhook_body(*, query_id: str, title: str, execution: dict[str, Any]) -> tuple[str, bytes]:
    """The event id and canonical (1.0) body of the webhook announcing ``execution``."""
    event_id = f"evt_{execution['id']}"
    body = orjson.dumps(
        {
            "version": "1.0",
            "eventType": "query.triggered",
            "eventId": event_id,
            "timestamp": execution["createdAt"],
            "queryId": query_id,
            "channel": "webhook",
            "executionId": execution["id"],
            "trigger": {"reason": title},
            "evaluation": {"triggered": True},
            "action": {"type": "webhook"},
        }
    )
    return event_id, body
