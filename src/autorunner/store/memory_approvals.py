"""Approvals in the in-memory twin (``store.base.Approvals``), mixed into ``MemoryStore``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from autorunner.records import (
    Answered,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalView,
    Operation,
)
from autorunner.store.rules import answer_operation, answered, in_time


class MemoryApprovals:
    """The approvals half of ``MemoryStore``; it moves events through the store's hooks."""

    _approvals: dict[str, ApprovalView]
    _operations: list[Operation]
    _check: Callable[[], None]
    _resume: Callable[[str, float], bool]
    _awaiting: Callable[[], list[str]]

    async def request_approval(self, request: ApprovalRequest) -> ApprovalView:
        self._check()
        found = self._approvals.get(request.approval_id)
        if found is None:
            found = ApprovalView(**asdict(request))
            self._approvals[request.approval_id] = found
        return copy.deepcopy(found)

    async def answer_approval(
        self, approval_id: str, *, approve: bool, by: str, via: str, reason: str | None, at: float
    ) -> Answered | None:
        self._check()
        view = self._approvals.get(approval_id)
        if view is None:
            return None
        if view.status != "pending":
            return Answered(view=copy.deepcopy(view), changed=False)
        approve, by, via, reason = in_time(
            view, approve=approve, by=by, via=via, reason=reason, at=at
        )
        view = answered(view, approve=approve, by=by, via=via, reason=reason, at=at)
        self._approvals[approval_id] = view
        self._operations.append(
            answer_operation(view, approve=approve, by=by, via=via, reason=reason, at=at)
        )
        resumed = self._resume(view.event_id, at)
        return Answered(view=copy.deepcopy(view), changed=True, resumed=resumed)

    async def expire_approvals(self, *, now: float, limit: int) -> list[str]:
        self._check()
        due = sorted(
            (v for v in self._approvals.values() if v.status == "pending" and v.expires_at <= now),
            key=lambda v: v.expires_at,
        )[:limit]
        moved = []
        for view in due:
            approve = view.on_timeout == "approve"
            found = await self.answer_approval(
                view.approval_id, approve=approve, by="timeout", via="timeout", reason=None, at=now
            )
            if found is not None and found.resumed:
                moved.append(view.event_id)
        waiting = {v.event_id for v in self._approvals.values() if v.status == "pending"}
        moved += [i for i in self._awaiting() if i not in waiting and self._resume(i, now)]
        return moved[:limit]

    async def mark_notified(self, approval_id: str, message: dict[str, Any]) -> None:
        self._check()
        view = self._approvals.get(approval_id)
        if view is not None:
            self._approvals[approval_id] = replace(view, message=dict(message))

    async def get_approval(self, approval_id: str) -> ApprovalView | None:
        self._check()
        found = self._approvals.get(approval_id)
        return copy.deepcopy(found)

    async def list_approvals(
        self,
        *,
        limit: int,
        status: ApprovalStatus | None = None,
        unnotified: bool = False,
        event_id: str | None = None,
    ) -> list[ApprovalView]:
        self._check()
        if unnotified:
            found = [v for v in self._approvals.values() if v.status == "pending" and not v.message]
            found.sort(key=lambda v: v.requested_at)
        else:
            found = [
                v
                for v in self._approvals.values()
                if (status is None or v.status == status)
                and (event_id is None or v.event_id == event_id)
            ]
            found.sort(key=lambda v: v.requested_at, reverse=True)
        return copy.deepcopy(found[:limit])
