"""What operators do to a running system, in one place: the CLI calls these (and the console
will). Every act that changes what runs is journaled in the store with who did it and when.

    pause / resume      the kill switch: events wait (nothing is denied) until resumed
    resolve_effect      settle an ``unknown`` effect: it was sent, or send it again
    plan_rerun, rerun   a new decision generation of finished events, previewed, then executed
    redrive             dead letters back to the queue on the decision they had
    replay_one, replay_window
                        re-decide stored events under a policy in dry-run: what would change
    status              what runs, what waits, what needs a person
    find                the event a user names by any id they hold

Each raises ``OperationRefused`` (one line saying what is the case) when it does not apply.
"""

from __future__ import annotations

import dataclasses
import getpass
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autorunner.backends import Backends
from autorunner.clock import Clock, system_clock, utc_day
from autorunner.config import Settings
from autorunner.deciders import Decider
from autorunner.errors import ConfigError, OperationRefused
from autorunner.notional import Valuer
from autorunner.policy import Policy
from autorunner.records import Answered, EventDetail, Operation, Resolved
from autorunner.replay import Change, Redecided, Replayed, redecide, replay

CHANGES: tuple[Change, ...] = ("unchanged", "changed", "newly_denied", "newly_allowed", "no_record")


def actor() -> str:
    """Who is acting: the OS user at this host (recorded with every operation)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _operation(
    action: str,
    *,
    clock: Clock,
    by: str | None = None,
    event_id: str | None = None,
    target: str | None = None,
    **detail: Any,
) -> Operation:
    return Operation(
        at=clock(),
        actor=by or actor(),
        action=action,
        event_id=event_id,
        target=target,
        detail={k: v for k, v in detail.items() if v is not None},
    )


async def pause(
    backends: Backends, reason: str, *, by: str | None = None, clock: Clock = system_clock
) -> None:
    """Set the kill switch: no effect begins anywhere until ``resume``; events wait. ``by``
    names who acts (the OS user at this host when not given, as for every operation)."""
    await backends.store.set_flag(
        "paused", reason, operation=_operation("pause", clock=clock, by=by, reason=reason)
    )


async def resume(backends: Backends, *, by: str | None = None, clock: Clock = system_clock) -> bool:
    """Lift the kill switch; the events that waited run. False when it was not on."""
    if await backends.store.get_flag("paused") is None:
        return False
    await backends.store.set_flag(
        "paused", None, operation=_operation("resume", clock=clock, by=by)
    )
    return True


async def resolve_effect(
    backends: Backends,
    effect_key: str,
    *,
    resend: bool,
    note: str | None = None,
    by: str | None = None,
    clock: Clock = system_clock,
) -> Resolved:
    """Settle an ``unknown`` effect as sent, or send it again (its event runs once more on its
    pinned decision, every other effect skipped as done)."""
    operation = _operation(
        "effects.resolve",
        clock=clock,
        by=by,
        event_id=effect_key.rsplit(":", 1)[0],
        target=effect_key,
        resolution="resend" if resend else "sent",
        note=note,
    )
    resolved = await backends.store.resolve_effect(effect_key, resend=resend, operation=operation)
    if resolved is None:
        raise OperationRefused(f"no effect with key {effect_key!r}")
    if resolved.status != "unknown":
        raise OperationRefused(
            f"effect {effect_key!r} is {resolved.status}, not unknown: nothing to resolve"
        )
    if resolved.refused is not None:
        raise OperationRefused(f"cannot resend {effect_key!r}: {resolved.refused}")
    if resolved.reopened:
        await backends.queue.enqueue(resolved.event_id)
    return resolved


async def rerun(
    backends: Backends,
    event_id: str,
    *,
    decision: dict[str, Any] | None = None,
    policy_hash: str | None = None,
    note: str | None = None,
    by: str | None = None,
    clock: Clock = system_clock,
) -> int:
    """Decide a finished event again and execute what is allowed: a new generation whose effect
    keys cannot collide with the earlier ones'. With ``decision`` (made under another policy,
    ``policy_hash``) the workers act on it, still checked against their own policy's limits."""
    operation = _operation(
        "events.rerun",
        clock=clock,
        by=by,
        event_id=event_id,
        policy_hash=policy_hash,
        note=note,
    )
    generation = await backends.store.rerun(event_id, operation=operation, decision=decision)
    if generation is None:
        detail = await backends.store.get_event(event_id)
        if detail is None:
            raise OperationRefused(f"no event with id {event_id!r}")
        raise OperationRefused(
            f"event {event_id!r} is {detail.summary.status}: only finished events (done, dead) can be rerun"
        )
    await backends.queue.enqueue(event_id)
    return generation


async def redrive(
    backends: Backends,
    event_id: str | None,
    *,
    by: str | None = None,
    clock: Clock = system_clock,
) -> list[str]:
    """Dead letters (one, or all with ``None``) back to the queue, on the decision they had;
    each is journaled in the transaction that moves it."""
    ids = await backends.store.redrive(
        event_id, operation=_operation("dlq.redrive", clock=clock, by=by)
    )
    for found in ids:
        await backends.queue.enqueue(found)
    if event_id is not None and not ids:
        raise OperationRefused(f"no dead letter with id {event_id!r}")
    return ids


async def status(
    backends: Backends, settings: Settings, *, done: bool = True, clock: Clock = system_clock
) -> dict[str, Any]:
    """Workers and their heartbeats, the queue against ``LAG_THRESHOLD``, events by status,
    and everything that needs a person (dead letters, unknown effects, lapsed leases).
    ``done=False`` leaves out the count of finished events and of duplicates, the part that
    reads the whole table (the console's live overview asks every second)."""
    now = clock()
    queue = await backends.queue.stats()
    store = await backends.store.stats(done=done)
    stale_after = max(3 * settings.lease_seconds, 5.0)
    workers = [
        {
            "name": w.name,
            "role": w.role,
            "heartbeat_age_seconds": round(now - w.heartbeat_at, 3),
            "up_seconds": round(now - w.started_at, 3),
            "in_flight": w.in_flight,
            "alive": now - w.heartbeat_at <= stale_after,
        }
        for w in await backends.store.list_workers()
    ]
    oldest = store.oldest_unfinished_at
    return {
        "mode": settings.runner_mode,
        "paused": await backends.store.get_flag("paused"),
        "workers": workers,
        "queue_depth": queue.depth,
        "ready": queue.ready,
        "in_flight": queue.in_flight,
        "oldest_pending_age_seconds": None
        if queue.oldest_ready_age is None
        else round(queue.oldest_ready_age, 3),
        "lag_threshold_seconds": settings.lag_threshold,
        "lagging": (queue.oldest_ready_age or 0.0) > settings.lag_threshold,
        "oldest_unfinished_event_age_seconds": None if oldest is None else round(now - oldest, 3),
        "events": store.counts,
        "dead_letters": store.counts.get("dead", 0),
        "duplicates": store.duplicates,
        "lapsed_leases": store.lapsed_leases,
        "unknown_effects": store.unknown_effects,
        "rejected_deliveries": store.rejected,
        "last_hour": await last_hour(backends, clock=clock),
        "llm_spend_today": [v.to_dict() for v in await backends.store.spend_of(utc_day(now))],
        "approvals_pending": len(await backends.store.list_approvals(limit=1000, status="pending")),
    }


async def last_hour(backends: Backends, *, clock: Clock = system_clock) -> dict[str, Any]:
    """What every process counted in the last hour (``tallies``, up to ``FLUSH_EVERY`` late):
    deliveries refused by reason and runs by outcome, each most first."""
    found = await backends.store.tallies(since_minute=int(clock() // 60) - 59)
    split: dict[str, dict[str, int]] = {"refused": {}, "runs": {}}
    for name, count in sorted(found.items(), key=lambda item: (-item[1], item[0])):
        kind, _, what = name.partition(":")
        split.setdefault(kind, {})[what] = count
    return split


async def find(backends: Backends, any_id: str) -> EventDetail:
    """The event a user names by any id they hold: stored, execution or delivery id."""
    found = await backends.store.find_event(any_id)
    detail = None if found is None else await backends.store.get_event(found)
    if detail is None:
        raise OperationRefused(f"no event with id {any_id!r}")
    return detail


def policy_with_decider(policy: Policy, decider: str, available: Mapping[str, Decider]) -> Policy:
    """``policy`` with every route decided by ``decider`` (``replay --decider``)."""
    if decider not in available:
        raise ConfigError(
            f"decider {decider!r} is not available here (configured: {', '.join(sorted(available))})"
        )
    return Policy(
        routes=tuple(dataclasses.replace(r, decider=decider) for r in policy.routes),
        default=dataclasses.replace(policy.default, decider=decider),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplaySummary:
    """Events decided again under one policy, and how each verdict would change."""

    policy_hash: str
    results: tuple[Replayed, ...]

    def counts(self) -> dict[str, int]:
        """How many results of each kind of change."""
        return {c: sum(r.change == c for r in self.results) for c in CHANGES}

    def differences(self) -> list[Replayed]:
        return [r for r in self.results if r.change not in ("unchanged", "no_record")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_hash": self.policy_hash,
            "events": len(self.results),
            **self.counts(),
            "differences": [r.to_dict() for r in self.differences()],
        }


async def replay_one(
    backends: Backends,
    any_id: str,
    policy: Policy,
    deciders: Mapping[str, Decider],
    *,
    valuers: Mapping[str, Valuer],
) -> Replayed:
    """One stored event decided again under ``policy`` in dry-run; nothing is executed."""
    return await replay(await find(backends, any_id), policy, deciders, valuers=valuers)


async def replay_window(
    backends: Backends,
    policy: Policy,
    deciders: Mapping[str, Decider],
    *,
    valuers: Mapping[str, Valuer],
    since: float | None,
    until: float | None,
    limit: int,
    progress: Callable[[int], Callable[[], None]] = lambda _: lambda: None,
) -> ReplaySummary:
    """Every event received in ``[since, until)`` (oldest first, at most ``limit``) decided
    again under ``policy`` in dry-run; ``progress(total)`` returns a tick called per event."""
    events = await backends.store.list_events(limit=limit, since=since, until=until)
    tick = progress(len(events))
    results = []
    for summary in reversed(events):
        detail = await backends.store.get_event(summary.event_id)
        if detail is not None:
            results.append(await replay(detail, policy, deciders, valuers=valuers))
        tick()
    return ReplaySummary(policy_hash=policy.hash, results=tuple(results))


@dataclass(frozen=True, kw_only=True, slots=True)
class PlannedRerun:
    """A finished event and what it would get if run again now."""

    detail: EventDetail
    again: Redecided


async def plan_rerun(
    backends: Backends,
    policy: Policy,
    deciders: Mapping[str, Decider],
    *,
    valuers: Mapping[str, Valuer],
    event_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    route: str | None = None,
    limit: int = 1000,
) -> list[PlannedRerun]:
    """The finished events ``rerun`` would start again (one by any id, or those received in a
    window on a route), each decided now under ``policy`` for the preview; changes nothing."""
    if event_id is not None:
        details = [await find(backends, event_id)]
        unfinished = details[0].summary
        if unfinished.status not in ("done", "dead"):
            raise OperationRefused(
                f"event {unfinished.event_id!r} is {unfinished.status}: only finished events"
                " (done, dead) can be rerun"
            )
    else:
        found = await backends.store.list_events(limit=limit, since=since, until=until, route=route)
        details = [
            d
            for s in reversed(found)
            if s.status in ("done", "dead")
            and (d := await backends.store.get_event(s.event_id)) is not None
        ]
    if not details:
        raise OperationRefused("no finished events match: nothing to rerun")
    return [
        PlannedRerun(detail=d, again=await redecide(d, policy, deciders, valuers=valuers))
        for d in details
    ]


async def rerun_planned(
    backends: Backends,
    planned: list[PlannedRerun],
    *,
    decided_now: bool,
    policy_hash: str,
    note: str | None = None,
    by: str | None = None,
    clock: Clock = system_clock,
) -> list[dict[str, Any]]:
    """Start each planned event's next generation; with ``decided_now`` the workers act on the
    preview's decision (made under ``policy_hash``), else they decide afresh."""
    started = []
    for plan in planned:
        pinned = plan.again.decision.to_dict() if decided_now and plan.again.decision else None
        generation = await rerun(
            backends,
            plan.detail.summary.event_id,
            decision=pinned,
            policy_hash=policy_hash if decided_now else None,
            note=note,
            by=by,
            clock=clock,
        )
        started.append({"event_id": plan.detail.summary.event_id, "generation": generation})
    return started


async def answer_approval(
    backends: Backends,
    approval_id: str,
    *,
    approve: bool,
    via: str,
    by: str | None = None,
    reason: str | None = None,
    clock: Clock = system_clock,
) -> Answered:
    """Approve or reject a pending approval (the first answer wins; a second is refused with
    what stands); its event goes back to the queue to act on the answer."""
    answered = await backends.store.answer_approval(
        approval_id, approve=approve, by=by or actor(), via=via, reason=reason, at=clock()
    )
    if answered is None:
        raise OperationRefused(f"no approval with id {approval_id!r}")
    if answered.resumed:
        await backends.queue.enqueue(answered.view.event_id)
    if answered.changed and answered.view.answered_via == "timeout" and via != "timeout":
        raise OperationRefused(
            f"approval {approval_id} had expired: its on_timeout"
            f" ({answered.view.on_timeout}) applies, not this answer"
        )
    if not answered.changed:
        view = answered.view
        raise OperationRefused(
            f"approval {approval_id} was {view.status} already"
            f" (by {view.answered_by} via {view.answered_via})"
        )
    return answered
