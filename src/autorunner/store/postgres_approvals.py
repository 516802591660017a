"""Approvals on the PostgreSQL store (``store.base.Approvals``), mixed into ``PostgresStore``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict
from typing import Any

from psycopg.types.json import Jsonb

from autorunner.postgresdb import Conn
from autorunner.records import (
    Answered,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalView,
    Operation,
)
from autorunner.store.rules import answer_operation, answered, in_time
from autorunner.store.sql import APPROVAL_COLUMNS, answer_of, approval_from_row, approvals_query

MIGRATION = """CREATE TABLE approvals (approval_id text PRIMARY KEY, event_id text NOT NULL,
    status text NOT NULL, requested_at double precision NOT NULL,
    expires_at double precision NOT NULL, request_json jsonb NOT NULL, answer_json jsonb,
    message_json jsonb);
CREATE INDEX approvals_pending ON approvals (expires_at) WHERE status = 'pending';
CREATE INDEX approvals_requested ON approvals (requested_at);
CREATE INDEX approvals_event ON approvals (event_id);
CREATE INDEX events_awaiting ON events (event_id) WHERE status = 'awaiting';
"""

AWAITING = (
    "CASE WHEN EXISTS (SELECT 1 FROM approvals WHERE approval_id = %(approval)s"
    " AND status = 'pending') THEN 'awaiting' ELSE 'pending' END"
)
"""The status an event parks in for its approval (see ``sqlite_approvals.AWAITING``). An
answer racing the parking may still leave it ``awaiting``: ``expire_approvals`` repairs that."""


def _view(row: Any) -> ApprovalView:
    return approval_from_row(row, lambda value: value)


class PostgresApprovals:
    """The approvals half of ``PostgresStore``."""

    _tx: Callable[..., AbstractAsyncContextManager[Conn]]
    _journal: Callable[[Conn, Operation], Awaitable[None]]  # PostgresOperators'

    async def request_approval(self, request: ApprovalRequest) -> ApprovalView:
        async with self._tx(atomic=True) as conn:
            await conn.execute(
                "INSERT INTO approvals (approval_id, event_id, status, requested_at, expires_at,"
                " request_json) VALUES (%s, %s, 'pending', %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    request.approval_id,
                    request.event_id,
                    request.requested_at,
                    request.expires_at,
                    Jsonb(asdict(request)),
                ),
            )
            cur = await conn.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = %s",
                (request.approval_id,),
            )
            return _view(await cur.fetchone())

    async def _answer_in(
        self,
        conn: Conn,
        approval_id: str,
        *,
        approve: bool,
        by: str,
        via: str,
        reason: str | None,
        at: float,
    ) -> Answered | None:
        cur = await conn.execute(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = %s FOR UPDATE",
            (approval_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        view = _view(row)
        if view.status != "pending":
            return Answered(view=view, changed=False)
        approve, by, via, reason = in_time(
            view, approve=approve, by=by, via=via, reason=reason, at=at
        )
        view = answered(view, approve=approve, by=by, via=via, reason=reason, at=at)
        await conn.execute(
            "UPDATE approvals SET status = %s, answer_json = %s WHERE approval_id = %s",
            (view.status, Jsonb(answer_of(view)), approval_id),
        )
        await self._journal(
            conn, answer_operation(view, approve=approve, by=by, via=via, reason=reason, at=at)
        )
        cur = await conn.execute(
            "UPDATE events SET status = 'pending', available_at = %s"
            " WHERE event_id = %s AND status = 'awaiting'",
            (at, view.event_id),
        )
        return Answered(view=view, changed=True, resumed=bool(cur.rowcount))

    async def answer_approval(
        self, approval_id: str, *, approve: bool, by: str, via: str, reason: str | None, at: float
    ) -> Answered | None:
        async with self._tx(atomic=True) as conn:
            return await self._answer_in(
                conn, approval_id, approve=approve, by=by, via=via, reason=reason, at=at
            )

    async def expire_approvals(self, *, now: float, limit: int) -> list[str]:
        async with self._tx(atomic=True) as conn:
            cur = await conn.execute(
                "SELECT approval_id, request_json ->> 'on_timeout' FROM approvals"
                " WHERE status = 'pending' AND expires_at <= %s ORDER BY expires_at LIMIT %s",
                (now, limit),
            )
            resumed = []
            for approval_id, on_timeout in await cur.fetchall():
                found = await self._answer_in(
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
            cur = await conn.execute(
                "UPDATE events SET status = 'pending', available_at = %(now)s WHERE event_id IN"
                " (SELECT event_id FROM events WHERE status = 'awaiting' AND NOT EXISTS"
                "  (SELECT 1 FROM approvals a WHERE a.event_id = events.event_id"
                "   AND a.status = 'pending') LIMIT %(limit)s) AND status = 'awaiting'"
                " RETURNING event_id",
                {"now": now, "limit": limit},
            )
            return resumed + [r[0] for r in await cur.fetchall()]

    async def mark_notified(self, approval_id: str, message: dict[str, Any]) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE approvals SET message_json = %s WHERE approval_id = %s",
                (Jsonb(message), approval_id),
            )

    async def get_approval(self, approval_id: str) -> ApprovalView | None:
        async with self._tx() as conn:
            cur = await conn.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = %s", (approval_id,)
            )
            row = await cur.fetchone()
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
            lambda name: f"%({name})s", status=status, unnotified=unnotified, event_id=event_id
        )
        async with self._tx() as conn:
            cur = await conn.execute(
                query.encode(), {"status": status, "limit": limit, "event_id": event_id}
            )
            rows = await cur.fetchall()
        return [_view(r) for r in rows]
