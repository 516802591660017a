"""The canonical ``Event`` and the pure normalizers for every shape Elfa Auto has sent.

Webhook bodies (auto-contract §3) come in two shapes, SSE frames (§4) in three; all become one
``Event``. Nothing here does I/O, and nothing here raises anything but ``InvalidEvent``.

Identity does not depend on the channel that won: ``event_id`` is the execution id when the
delivery names one (the one id proven stable across webhook, SSE and poll), else the payload's
own id (a notification's ``id`` is the same in its webhook and its stream frame), else the
delivery's id (header or frame id), else a deterministic fallback computed by the caller from
the signed content. The delivery's own id is kept as ``delivery_id``, so a user holding it finds
the event. The trigger's kind is canonical too: every trigger is ``query.triggered`` with status
``triggered``, whichever channel carried it (a polled execution's own ``success``/``failed`` is
the execution's outcome, kept in the payload, not the trigger's status).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from autorunner.errors import InvalidEvent

Channel = Literal["webhook", "sse", "poll", "test"]
Shape = Literal["canonical", "notification", "sse-notification"]

IGNORED_SSE_EVENTS = frozenset({"notification:count", "ready", "ping", "keep-alive"})
CONTROL_SSE_EVENTS = frozenset({"end", "error"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One trigger from Auto, whatever channel and shape it arrived in."""

    event_id: str
    channel: Channel
    shape: Shape
    event_type: str
    execution_id: str | None = None
    query_id: str | None = None
    status: str | None = None
    title: str | None = None
    body: str | None = None
    symbol: str | None = None
    priority: str | None = None
    occurred_at: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    delivery_id: str | None = None
    """The id the delivery itself carried (``X-Auto-Event-Id``, the SSE frame id), when it
    differs from ``event_id``."""
    traceparent: str | None = None
    """The W3C trace context of the span that admitted the event, when tracing is on: every
    attempt continues that trace (``tracing``)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the store's codec); ``payload`` is shared, not copied. Without
        a ``traceparent`` the key is left out, so a runner from before tracing reads it."""
        data = {name: getattr(self, name) for name in _EVENT_FIELDS}
        if self.traceparent is None:
            del data["traceparent"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Inverse of ``to_dict`` (also of older records without ``delivery_id``)."""
        return cls(**data)


TRIGGERED = "triggered"
TRIGGER_TYPE = "query.triggered"


def _identity(
    *, execution_id: str | None, own_id: str | None, delivery_id: str | None, fallback: Fallback
) -> tuple[str, str | None]:
    """``(event_id, delivery_id)``: see the module docstring; the delivery id is kept only when
    it is not the event id itself."""
    event_id = execution_id or own_id or delivery_id or _resolve(fallback)
    return event_id, (delivery_id if delivery_id != event_id else None)


_EVENT_FIELDS = tuple(f.name for f in fields(Event))


Fallback = str | Callable[[], str]
"""An event id for a delivery that names none, or a function computing it on demand."""


def _resolve(fallback: Fallback) -> str:
    return fallback if isinstance(fallback, str) else fallback()


def derived_event_id(*parts: bytes) -> str:
    """A deterministic id for a delivery that names none: a hash of its signed content."""
    digest = hashlib.sha256(b"\x1f".join(parts)).hexdigest()
    return f"derived-{digest[:32]}"


MAX_DEPTH = 32
"""How deeply an event's JSON may nest. Auto's shapes nest four levels; the stores' encoder
stops at 255, and an event is wrapped a few levels deeper in every record that holds it."""


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a JSON body that must be an object nested at most ``MAX_DEPTH`` levels."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidEvent(f"body must be a JSON object, got {type(value).__name__}")
    check_depth(value)
    return value


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """``InvalidEvent`` when ``value`` nests objects or arrays deeper than ``limit``."""
    level: list[object] = [value]
    for depth in range(1, limit + 2):
        level = [child for node in level for child in _containers_in(node)]
        if not level:
            return
        if depth >= limit:
            raise InvalidEvent(f"body nests deeper than {limit} levels")


def _containers_in(node: object) -> list[object]:
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return [child for child in children if isinstance(child, dict | list)]


def normalize_webhook(
    payload: dict[str, Any],
    *,
    delivery_id: str | None,
    fallback_id: Fallback,
    channel: Channel = "webhook",
) -> Event:
    """Turn a webhook body of any documented shape into an ``Event``.

    ``delivery_id`` is the ``X-Auto-Event-Id`` / ``webhook-id`` header when sent; ``fallback_id``
    (a string, or a function called only when needed — hashing a body is not free)
    is used when neither the header nor the body names the event.
    """
    shape = detect_shape(payload)
    if shape == "canonical":
        return _from_canonical(
            payload, delivery_id=delivery_id, fallback_id=fallback_id, channel=channel
        )
    if shape == "notification":
        return _from_notification(
            payload, delivery_id=delivery_id, fallback_id=fallback_id, channel=channel
        )
    return _from_sse_notification(
        payload, delivery_id=delivery_id, fallback_id=fallback_id, channel=channel
    )


def normalize_sse(event_name: str, frame_id: str | None, data: str) -> Event | None:
    """Turn one SSE frame into an ``Event``; ``None`` for frames that carry no trigger.

    ``end``/``error`` control frames and keep-alive style frames return ``None``; callers that
    care about control frames look at ``event_name`` themselves. A frame whose data is not an
    event raises ``InvalidEvent`` (the subscriber skips and counts it).
    """
    if event_name in IGNORED_SSE_EVENTS or event_name in CONTROL_SSE_EVENTS:
        return None
    payload = parse_json_object(data.encode())

    def fallback() -> str:
        return derived_event_id(b"sse", event_name.encode(), data.encode())

    shape = detect_shape(payload)
    if event_name == "notification" and "status" in payload and shape != "canonical":
        shape = "sse-notification"
    if shape == "canonical":
        return _from_canonical(payload, delivery_id=frame_id, fallback_id=fallback, channel="sse")
    if shape == "notification":
        return _from_notification(
            payload, delivery_id=frame_id, fallback_id=fallback, channel="sse"
        )
    return _from_sse_notification(
        payload, delivery_id=frame_id, fallback_id=fallback, channel="sse"
    )


def detect_shape(payload: dict[str, Any]) -> Shape:
    """Which documented shape a payload is, or ``InvalidEvent`` when it is none of them."""
    if "eventType" in payload or "eventId" in payload:
        return "canonical"
    if "type" in payload and "id" in payload and ("data" in payload or "title" in payload):
        return "notification"
    if "status" in payload and ("executionId" in payload or "queryId" in payload):
        return "sse-notification"
    raise InvalidEvent(
        "unknown event shape: expected eventType/eventId (canonical), id+type+data (notification) "
        "or status+queryId (stream notification)"
    )


def _from_canonical(
    p: dict[str, Any], *, delivery_id: str | None, fallback_id: Fallback, channel: Channel
) -> Event:
    trigger = _obj(p.get("trigger"))
    data = _obj(p.get("data"))
    execution_id = (
        _id(p.get("executionId")) or _id(trigger.get("executionId")) or _id(data.get("executionId"))
    )
    event_id, delivered = _identity(
        execution_id=execution_id,
        own_id=_id(p.get("eventId")),
        delivery_id=_id(delivery_id),
        fallback=fallback_id,
    )
    return Event(
        event_id=event_id,
        delivery_id=delivered,
        channel=channel,
        shape="canonical",
        event_type=_id(p.get("eventType")) or TRIGGER_TYPE,
        execution_id=execution_id,
        query_id=_id(p.get("queryId")) or _id(data.get("queryId")),
        status=_str(p.get("status")) or TRIGGERED,
        title=_str(p.get("title")) or _str(trigger.get("reason")),
        body=_str(p.get("body")) or _str(trigger.get("reason")),
        symbol=_str(trigger.get("symbol")) or _str(p.get("symbol")),
        priority=_str(p.get("priority")),
        occurred_at=_time(p.get("timestamp")) or _time(p.get("triggerTime")),
        payload=p,
    )


def _from_notification(
    p: dict[str, Any], *, delivery_id: str | None, fallback_id: Fallback, channel: Channel
) -> Event:
    data = _obj(p.get("data"))
    execution_id = _id(data.get("executionId")) or _id(p.get("executionId"))
    event_id, delivered = _identity(
        execution_id=execution_id,
        own_id=_id(p.get("id")),
        delivery_id=_id(delivery_id),
        fallback=fallback_id,
    )
    status = _str(data.get("status")) or TRIGGERED
    return Event(
        event_id=event_id,
        delivery_id=delivered,
        channel=channel,
        shape="notification",
        event_type=TRIGGER_TYPE if status == TRIGGERED else f"query.{status}",
        execution_id=execution_id,
        query_id=_id(data.get("queryId")) or _id(p.get("queryId")),
        status=status,
        title=_str(data.get("queryTitle")) or _str(p.get("title")),
        body=_str(p.get("body")),
        symbol=_str(data.get("symbol")),
        priority=_str(p.get("priority")),
        occurred_at=_time(p.get("createdAt")),
        payload=p,
    )


def _from_sse_notification(
    p: dict[str, Any], *, delivery_id: str | None, fallback_id: Fallback, channel: Channel
) -> Event:
    execution_id = _id(p.get("executionId"))
    event_id, delivered = _identity(
        execution_id=execution_id,
        own_id=None,
        delivery_id=_id(delivery_id),
        fallback=fallback_id,
    )
    status = _str(p.get("status")) or TRIGGERED
    return Event(
        event_id=event_id,
        delivery_id=delivered,
        channel=channel,
        shape="sse-notification",
        event_type=TRIGGER_TYPE if status == TRIGGERED else f"query.{status}",
        execution_id=execution_id,
        query_id=_id(p.get("queryId")),
        status=status,
        title=_str(p.get("queryTitle")) or _str(p.get("title")),
        body=_str(p.get("body")) or _str(p.get("message")),
        symbol=_str(p.get("symbol")),
        priority=_str(p.get("priority")),
        occurred_at=_time(p.get("triggerTime")) or _time(p.get("timestamp")),
        payload=p,
    )


_MAX_ID = 200


def _id(value: object) -> str | None:
    """An id as text: strings and integers are accepted (the SSE id has been both)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if text and len(text) <= _MAX_ID and text.isprintable():
            return text
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(value: object) -> str | None:
    """An ISO 8601 UTC instant from an ISO string or epoch seconds/milliseconds."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            return None
    return None


def normalize_execution(execution: dict[str, Any], *, query_id: str | None) -> Event:
    """An execution found by polling (``executions[]`` or ``GET /executions``) as an ``Event``.

    Its id is the execution id, which is also what SSE frames and webhooks carry as
    ``executionId``: the store's uniqueness on it makes a polled execution that already arrived
    by another channel a duplicate.
    """
    execution_id = _id(execution.get("id")) or _id(execution.get("executionId"))
    if execution_id is None:
        raise InvalidEvent("execution without an id")
    check_depth(execution)
    return Event(
        event_id=execution_id,
        channel="poll",
        shape="canonical",
        event_type=TRIGGER_TYPE,
        execution_id=execution_id,
        query_id=_id(execution.get("queryId")) or _id(execution.get("query_id")) or query_id,
        status=TRIGGERED,
        symbol=_str(execution.get("symbol")),
        occurred_at=_time(execution.get("createdAt")) or _time(execution.get("created_at")),
        payload=execution,
    )
