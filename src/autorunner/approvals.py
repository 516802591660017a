"""Approval gates (pure): which allowed actions of a verdict wait for a person, the request that
asks, and how its answer reads in the verdict.

An approval is bound to the exact actions it shows: its ``fingerprint`` hashes each gated
action's step, kind and parameters, and its id hashes the event, the decision generation and
the fingerprint. A button, a CLI call or a console form answers that id, so an answer cannot
land on a changed action (a rerun's new decision asks again under a new id) or on another
event. The decision itself is pinned to the event before anything is asked, so a restart, a
takeover or a retry asks for the same approval, never a second one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import orjson

from autorunner.decision import Action
from autorunner.events import Event
from autorunner.notional import Valued, Valuer
from autorunner.policy import Approval, Route
from autorunner.records import ApprovalRequest, ApprovalView


def gated(
    actions: Sequence[Action], approval: Approval, valuers: Mapping[str, Valuer]
) -> list[Action]:
    """The actions a person must approve: of a gated kind, and above the threshold when there
    is one — or of a notional that cannot be told (fail closed)."""
    found = []
    for action in actions:
        if action.kind not in approval.actions:
            continue
        threshold = approval.above_notional_usd
        if threshold is None:
            found.append(action)
            continue
        valuer = valuers.get(action.kind)
        notional = valuer(action.params) if valuer is not None else None
        if notional is None:
            continue  # it moves no money: under any threshold
        if isinstance(notional, Valued) and notional.usd <= threshold:
            continue
        found.append(action)
    return found


def fingerprint(actions: Sequence[Action]) -> str:
    """The exact actions asked about: step, kind and parameters, in step order."""
    ordered = sorted(actions, key=lambda a: a.step_id)
    content = [[a.step_id, a.kind, a.params] for a in ordered]
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS))
    return "sha256:" + digest.hexdigest()[:32]


def approval_id(event_id: str, generation: int, print_: str) -> str:
    """The id of the approval of ``print_`` in one event's decision generation (fits in a
    Telegram button's 64-byte ``callback_data`` with room to spare)."""
    digest = hashlib.sha256(f"{event_id}\x00{generation}\x00{print_}".encode())
    return "ap-" + digest.hexdigest()[:20]


def describe(action: Action) -> str:
    """One action on one line, as a person approving it reads it."""
    params = orjson.dumps(action.params, option=orjson.OPT_SORT_KEYS).decode()
    if len(params) > 300:
        params = params[:299] + "…"
    return f"{action.step_id}: {action.kind} {params}"


def request_for(
    event: Event,
    *,
    generation: int,
    route: Route,
    approval: Approval,
    actions: Sequence[Action],
    now: float,
) -> ApprovalRequest:
    """The request for ``actions`` of ``event``'s decision ``generation``."""
    print_ = fingerprint(actions)
    title = event.title or event.event_type
    lines = [f"Approve for {event.symbol or 'event'} — {title} (route {route.name})?"]
    lines += [f"• {describe(a)}" for a in actions]
    lines.append(
        f"No answer in {approval.timeout_seconds:g} s: {approval.on_timeout}. Event {event.event_id}"
    )
    return ApprovalRequest(
        approval_id=approval_id(event.event_id, generation, print_),
        event_id=event.event_id,
        generation=generation,
        fingerprint=print_,
        route=route.name,
        summary="\n".join(lines),
        actions=[{"step_id": a.step_id, "kind": a.kind, "params": a.params} for a in actions],
        approvers=list(approval.approvers),
        requested_at=now,
        expires_at=now + approval.timeout_seconds,
        on_timeout=approval.on_timeout,
    )


def denial(view: ApprovalView) -> str:
    """Why the gated actions of a refused approval are denied, in the verdict."""
    if view.answered_via == "timeout":
        return f"approval {view.approval_id} timed out (on_timeout = deny)"
    said = f": {view.reason}" if view.reason else ""
    return f"rejected by {view.answered_by} via {view.answered_via}{said} ({view.approval_id})"


def record_of(view: ApprovalView) -> dict[str, object]:
    """What a run record keeps of the approval it asked for or acted on."""
    return {
        "approval_id": view.approval_id,
        "status": view.status,
        "approved": view.approved,
        "fingerprint": view.fingerprint,
        "steps": [a["step_id"] for a in view.actions],
        "requested_at": view.requested_at,
        "expires_at": view.expires_at,
        "answered_by": view.answered_by,
        "answered_via": view.answered_via,
        "answered_at": view.answered_at,
        "reason": view.reason,
    }
