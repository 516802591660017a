"""What the SQL stores (SQLite, PostgreSQL) share: the columns they select and how a row of
them becomes a value."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autorunner.events import Event
from autorunner.records import (
    ApprovalView,
    EventSummary,
    Operation,
    RawDelivery,
    RejectedView,
    RunRecord,
    WorkerBeat,
)


def summary_columns(concat: str) -> str:
    """The columns ``summary_from_row`` reads; ``concat`` is the dialect's string aggregate
    (``group_concat`` or ``string_agg``), which gathers the event's effect statuses."""
    return (
        "event_id, execution_id, query_id, event_type, channel, status, attempts, received_at,"
        f" finished_at, last_error, route, (SELECT {concat}(status, ',') FROM effects"
        " WHERE effects.event_id = events.event_id), duplicates"
    )


_FILTERS = {
    "status": "status = ",
    "since": "received_at >= ",
    "until": "received_at < ",
    "query_id": "query_id = ",
    "route": "route = ",
}


def event_filters(
    style: Callable[[str], str], filters: Mapping[str, object], *, symbol: str
) -> str:
    """The ``WHERE`` clause of ``list_events`` for the given (not ``None``) ``filters``;
    ``style`` turns a parameter name into the dialect's placeholder, ``symbol`` is the
    dialect's expression for the event's symbol (it lives in the event's JSON)."""
    columns = {**_FILTERS, "symbol": f"{symbol} = "}
    conditions = [
        f"{columns[name]}{style(name)}" for name, value in filters.items() if value is not None
    ]
    return " WHERE " + " AND ".join(conditions) if conditions else ""


EFFECT_COLUMNS = (
    "effect_key, step_id, kind, status, tries, params_json, result_json, created_at, updated_at"
)
OPERATION_COLUMNS = "at, actor, action, event_id, target, detail_json"


def summary_from_row(row: Sequence[Any]) -> EventSummary:
    """A row of ``SUMMARY_COLUMNS``."""
    return EventSummary(
        event_id=row[0],
        execution_id=row[1],
        query_id=row[2],
        event_type=row[3],
        channel=row[4],
        status=row[5],
        attempts=row[6],
        received_at=row[7],
        finished_at=row[8],
        last_error=row[9],
        route=row[10],
        effects=dict(Counter(row[11].split(","))) if row[11] else {},
        duplicates=row[12],
    )


def effect_from_row(row: Sequence[Any], decode: Callable[[Any], Any]) -> dict[str, Any]:
    """A row of ``EFFECT_COLUMNS``; ``decode`` turns a stored JSON value into Python."""
    return {
        "effect_key": row[0],
        "step_id": row[1],
        "kind": row[2],
        "status": row[3],
        "tries": row[4],
        "params": decode(row[5]),
        "result": None if row[6] is None else decode(row[6]),
        "created_at": row[7],
        "updated_at": row[8],
    }


def finish_params(
    run: RunRecord, *, owner: str, now: float, retry_at: float | None, reason: str | None
) -> dict[str, Any]:
    """The named parameters of both SQL stores' ``finish`` statements."""
    return {
        "id": run.event_id,
        "owner": owner,
        "now": now,
        "error": (reason or run.error or "").replace("\x00", "\ufffd") or None,
        "retry_at": retry_at if retry_at is not None else now,
        "attempt": run.attempt,
        "route": run.route,
        "approval": (run.approval or {}).get("approval_id"),
    }


def operation_from_row(row: Sequence[Any], decode: Callable[[Any], Any]) -> Operation:
    """A row of ``OPERATION_COLUMNS``."""
    return Operation(
        at=row[0],
        actor=row[1],
        action=row[2],
        event_id=row[3],
        target=row[4],
        detail=decode(row[5]),
    )


WORKER_COLUMNS = "name, role, started_at, heartbeat_at, in_flight"


def worker_from_row(row: Sequence[Any]) -> WorkerBeat:
    """A row of ``WORKER_COLUMNS``."""
    return WorkerBeat(
        name=row[0], role=row[1], started_at=row[2], heartbeat_at=row[3], in_flight=row[4]
    )


def rejected_from_row(row_id: int, reason: str, raw: dict[str, Any]) -> RejectedView:
    """A kept rejected delivery from its id, reason and decoded ``raw_json``."""
    return RejectedView(
        id=row_id,
        reason=reason,
        received_at=raw["received_at"],
        headers=raw["headers"],
        body=raw["body"],
    )


APPROVAL_COLUMNS = "request_json, status, answer_json, message_json"


def approval_from_row(row: Sequence[Any], decode: Callable[[Any], Any]) -> ApprovalView:
    """A row of ``APPROVAL_COLUMNS`` (JSON as text for SQLite, decoded already for psycopg)."""
    request, status, answer, message = row[0], row[1], row[2], row[3]
    return ApprovalView(
        **decode(request),
        status=status,
        **(decode(answer) if answer is not None else {}),
        message=decode(message) if message is not None else None,
    )


def answer_of(view: ApprovalView) -> dict[str, Any]:
    """What an answered ``view`` keeps in ``answer_json``."""
    return {
        "approved": view.approved,
        "answered_by": view.answered_by,
        "answered_via": view.answered_via,
        "answered_at": view.answered_at,
        "reason": view.reason,
    }


def approvals_query(
    style: Callable[[str], str], *, status: str | None, unnotified: bool, event_id: str | None
) -> str:
    """``list_approvals``' statement; ``style`` turns a parameter name into the dialect's
    placeholder (``status``, ``event_id``, ``limit``)."""
    if unnotified:
        return (
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending'"
            f" AND message_json IS NULL ORDER BY requested_at LIMIT {style('limit')}"
        )
    conditions = [
        *([f"status = {style('status')}"] if status is not None else []),
        *([f"event_id = {style('event_id')}"] if event_id is not None else []),
    ]
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    return (
        f"SELECT {APPROVAL_COLUMNS} FROM approvals{where}"
        f" ORDER BY requested_at DESC LIMIT {style('limit')}"
    )


def event_row(
    event: Event, raw: RawDelivery, now: float, encode: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """The values of a new ``events`` row in both SQL stores' column order (``event_id,
    execution_id, delivery_id, query_id, event_type, channel, received_at, available_at,
    event_json, raw_json``); ``encode`` turns the event and the delivery into the dialect's
    JSON value."""
    return (
        event.event_id,
        event.execution_id,
        event.delivery_id,
        event.query_id,
        event.event_type,
        event.channel,
        now,
        now,
        encode(event),
        encode(raw),
    )
