"""Approvals on the SQLite store (``store.base.Approvals``), mixed into ``SqliteStore``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson

from autorunner.records import (
    Answered,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalView,
    Operation,
)
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store.rules import answer_operation, answered, in_time
from autorunner.store.sql import APPROVAL_COLUMNS, answer_of, approval_from_row, approvals_query

MIGRATION = """CREATE TABLE approvals (approval_id TEXT PRIMARY KEY, event_id TEXT NOT NULL,
    status TEXT NOT NULL, requested_at REAL NOT NULL, expires_at REAL NOT NULL,
    request_json TEXT NOT NULL, answer_json TEXT, message_json TEXT);
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE status = 'pending';
CREATE INDEX approvals_requested ON approvals (requested_at);
CREATE INDEX approvals_event ON approvals (event_id);
CREATE INDEX events_awaiting ON events (event_id) WHERE status = 'awaiting'"""

AWAITING = (
    "CASE WHEN EXISTS (SELECT 1 FROM approvals WHERE approval_id = :approval"
    " AND status = 'pending') THEN 'awaiting' ELSE 'pending' END"
)
"""The status an event parks in for its approval: ``awaiting`` while it is unanswered, back to
``pending`` when the answer came first (it cannot have moved an event still running)."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _view(row: Any) -> ApprovalView:
    return approval_from_row(row, orjson.loads)


class SqliteApprovals:
    """The approvals half of ``SqliteStore``."""

    db: SqliteDatabase
    _journal: Callable[[sqlite3.Connection, Operation], None]  # SqliteOperators'

    async def request_approval(self, request: ApprovalRequest) -> ApprovalView:
        def op(conn: sqlite3.Connection) -> ApprovalView:
            conn.execute(
                "INSERT INTO approvals (approval_id, event_id, status, requested_at, expires_at,"
                " request_json) VALUES (?, ?, 'pending', ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    request.approval_id,
                    request.event_id,
                    request.requested_at,
                    request.expires_at,
                    _dumps(asdict(request)),
                ),
            )
            return _view(
                conn.execute(
                    f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = ?",
                    (request.approval_id,),
                ).fetchone()
            )

        return await self.db.write(op)

    def _answer_in(
        self,
        conn: sqlite3.Connection,
        approval_id: str,
        *,
        approve: bool,
        by: str,
        via: str,
        reason: str | None,
        at: float,
    ) -> Answered | None:
        row = conn.execute(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = ?", (approval_id,)
        ).fetchone()
        if row is None:
            return None
        view = _view(row)
        if view.status != "pending":
            return Answered(view=view, changed=False)
        approve, by, via, reason = in_time(
            view, approve=approve, by=by, via=via, reason=reason, at=at
        )
        view = answered(view, approve=approve, by=by, via=via, reason=reason, at=at)
        conn.execute(
            "UPDATE approvals SET status = ?, answer_json = ? WHERE approval_id = ?",
            (view.status, _dumps(answer_of(view)), approval_id),
        )
        self._journal(
            conn, answer_operation(view, approve=approve, by=by, via=via, reason=reason, at=at)
        )
        resumed = conn.execute(
            "UPDATE events SET status = 'pending', available_at = ?"
            " WHERE event_id = ? AND status = 'awaiting'",
            (at, view.event_id),
        ).rowcount
        return Answered(view=view, changed=True, resumed=bool(resumed))

    async def answer_approval(
        self, approval_id: str, *, approve: bool, by: str, via: str, reason: str | None, at: float
    ) -> Answered | None:
        return await self.db.write(
            lambda conn: self._answer_in(
                conn, approval_id, approve=approve, by=by, via=via, reason=reason, at=at
            )
        )

    async def expire_approvals(self, *, now: float, limit: int) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            due = conn.execute(
                "SELECT approval_id, json_extract(request_json, '$.on_timeout') FROM approvals"
                " WHERE status = 'pending' AND expires_at <= ? ORDER BY expires_at LIMIT ?",
                (now, limit),
            ).fetchall()
            resumed = []
            for approval_id, on_timeout in due:
                found = self._answer_in(
                    conn,
                    approval_id,
                    approve=on_timeout == "approve",
                    by="timeout",
                    via="timeout",
                    reason=None,
                    at=now,
                )
                if found is not None and found.resumed:
                    resumed.append(found.view.event_id)
            return resumed + [
                r[0]
                for r in conn.execute(
                    "UPDATE events SET status = 'pending', available_at = :now WHERE event_id IN"
                    " (SELECT event_id FROM events WHERE status = 'awaiting' AND NOT EXISTS"
                    "  (SELECT 1 FROM approvals a WHERE a.event_id = events.event_id"
                    "   AND a.status = 'pending') LIMIT :limit) RETURNING event_id",
                    {"now": now, "limit": limit},
                ).fetchall()
            ]

        return await self.db.write(op)

    async def mark_notified(self, approval_id: str, message: dict[str, Any]) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "UPDATE approvals SET message_json = ? WHERE approval_id = ?",
                (_dumps(message), approval_id),
            )
        )

    async def get_approval(self, approval_id: str) -> ApprovalView | None:
        row = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = ?", (approval_id,)
            ).fetchone()
        )
        return None if row is None else _view(row)

    async def list_approvals(
        self,
        *,
        limit: int,
        status: ApprovalStatus | None = None,
        unnotified: bool = False,
        event_id: str | None = None,
    ) -> list[ApprovalView]:
        query = approvals_query(
            lambda name: f":{name}", status=status, unnotified=unnotified, event_id=event_id
        )
        rows = await self.db.read(
            lambda conn: conn.execute(
                query, {"status": status, "limit": limit, "event_id": event_id}
            ).fetchall()
        )
        return [_view(r) for r in rows]
