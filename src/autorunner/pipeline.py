"""One event end to end: route → envelope → decide → verdict → effects through the ledger.

The pipeline never decides about retries: it returns what happened (an ``Attempt``) and the
worker applies the retry rule. Every effect goes through the ledger: intent is recorded before
the adapter is called and the result after, so a retried job skips effects that completed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from autorunner import facts
from autorunner.adapters.base import Adapter, valuers
from autorunner.clock import Clock, system_clock
from autorunner.context import ContextSource, NoContext
from autorunner.deciders import Decider
from autorunner.deciders.rules import RulesDecider
from autorunner.decision import Action, Decision, InvalidProposal, Verdict
from autorunner.envelope import Envelope
from autorunner.errors import (
    AutoAuthError,
    AutoPaymentRequired,
    AutoRejected,
    DeliveryUnknown,
    InvalidDecision,
    JobError,
    PermanentError,
    Superseded,
    TransientError,
    Unavailable,
)
from autorunner.events import Event
from autorunner.gating import gate
from autorunner.policy import Policy, Route, check
from autorunner.records import EffectIntent, EffectStatus, Leased, Pin, RunRecord
from autorunner.store.base import Approvals, Flags, Ledger
from autorunner.store.rules import effect_key
from autorunner.tracing import OFF, Tracing

log = structlog.get_logger("autorunner.pipeline")


@dataclass(kw_only=True, slots=True)
class Attempt:
    """What one run of the pipeline did; ``error`` is None when every allowed effect succeeded.

    ``held`` (the operator's reason) when the runner was paused before an effect: the attempt
    does not count, the event waits and runs on after ``resume``.
    """

    record: RunRecord
    error: JobError | None
    max_attempts: int
    held: str | None = None
    awaiting: str | None = None
    """The approval the event now waits for: not an attempt; an answer brings it back."""


class Held(Exception):
    """The kill switch is on: no effect may begin now (raised inside the pipeline only)."""


class Awaiting(Exception):
    """A gated action waits for a person's answer (raised inside the pipeline only)."""

    def __init__(self, approval_id: str) -> None:
        super().__init__(approval_id)
        self.approval_id = approval_id


@dataclass(kw_only=True, slots=True)
class _Draft:
    """What an attempt has done so far, typed until ``record`` makes the run record of it."""

    started_at: float
    route: str | None = None
    envelope: Envelope | None = None
    decision: Decision | InvalidProposal | None = None
    reused: bool = False
    verdict: Verdict | None = None
    context: dict[str, Any] | None = None
    effects: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    facts_error: str | None = None
    approval: dict[str, Any] | None = None

    def record(
        self, leased: Leased, *, policy_hash: str, finished_at: float, error: JobError | None
    ) -> RunRecord:
        decision = None
        if self.decision is not None:
            decision = {**self.decision.to_dict(), "policy_hash": policy_hash}
            if self.reused:
                decision["reused"] = True
        context = self.context
        if self.facts_error is not None:
            context = {**(context or {}), "facts_error": self.facts_error}
        return RunRecord(
            event_id=leased.event.event_id,
            attempt=leased.attempt,
            outcome="done" if error is None else "retry",
            started_at=self.started_at,
            finished_at=finished_at,
            route=self.route,
            envelope=None if self.envelope is None else self.envelope.to_dict(),
            context=context,
            decision=decision,
            verdict=None if self.verdict is None else self.verdict.to_dict(),
            effects=self.effects,
            timings_ms=self.timings_ms,
            error=None if error is None else f"{type(error).__name__}: {error}",
            generation=leased.generation,
            approval=self.approval,
        )


class Pipeline:
    """Runs leased events; holds no per-event state between runs."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        flags: Flags,
        approvals: Approvals,
        policy: Policy,
        deciders: Mapping[str, Decider],
        adapters: Mapping[str, Adapter],
        context: ContextSource | None = None,
        clock: Clock = system_clock,
        pause_check_seconds: float = 1.0,
        tracing: Tracing = OFF,
    ) -> None:
        self._tracing = tracing
        self._ledger = ledger
        self._flags = flags
        self._approvals = approvals
        self.policy = policy
        self._deciders = deciders
        self.adapters = adapters
        self._valuers = valuers(adapters)
        self._context = context or NoContext()
        self._pause: tuple[float, str | None] = (float("-inf"), None)
        self._pause_ttl = pause_check_seconds
        self._clock = clock
        self._closing = False
        self._sending: set[asyncio.Task[Any] | None] = set()

    async def run(self, leased: Leased) -> Attempt:
        """Run one attempt; errors become the attempt's ``error``, except ``Unavailable``."""
        event = leased.event
        route = self.policy.default
        draft = _Draft(started_at=self._clock(), route=route.name)
        limit = route.constraints.max_execution_seconds
        error: JobError | None = None
        held: str | None = None
        awaiting: str | None = None
        try:
            async with asyncio.timeout(limit) as deadline:
                # The facts come first: the route is chosen on them, whatever channel won. Its
                # time limit then counts from the start of the attempt.
                mark = time.perf_counter()
                with self._tracing.span("facts"):
                    event = facts.resolve(event, await self._query(event, draft))
                _lap(draft, "facts", mark)
                route = self.policy.route_for(event)
                if route.constraints.max_execution_seconds != limit:
                    started = (deadline.when() or 0.0) - limit
                    limit = route.constraints.max_execution_seconds
                    deadline.reschedule(started + limit)
                draft.route = route.name
                await self._steps(leased, event, route, draft)
        except Held as exc:
            held = str(exc)
        except Awaiting as exc:
            awaiting = exc.approval_id
        except TimeoutError:
            error = TransientError(f"timed out after {limit:g}s (route {route.name!r})")
        except JobError as exc:
            error = exc
        except Unavailable:
            # Nothing can be recorded now: the worker leaves the job, which comes back when its
            # lease lapses (an effect begun meanwhile is settled by the ledger on that attempt).
            raise
        except (
            Exception
        ) as exc:  # a bug or an unexpected library error: retried, then dead-lettered
            log.exception("pipeline.unexpected_error", event_id=event.event_id)
            error = TransientError(f"unexpected {type(exc).__name__}: {exc}")
        record = draft.record(
            leased, policy_hash=self.policy.hash, finished_at=self._clock(), error=error
        )
        return Attempt(
            record=record,
            error=error,
            max_attempts=route.constraints.max_attempts,
            held=held,
            awaiting=awaiting,
        )

    async def _steps(self, leased: Leased, event: Event, route: Route, draft: _Draft) -> None:
        mark = time.perf_counter()
        draft.envelope = Envelope.build(event, route)
        # A retry, a takeover, a resend or a resume acts on the decision its effects began
        # under, never on a new one (``Ledger.pin_decision``, read with the lease); this also
        # spares the model a second call.
        pinned = leased.pinned
        if pinned is not None:
            decision = Decision.from_dict(pinned)
        else:
            found = await self._decide(event, route, draft.envelope, draft)
            if found is None:
                return
            decision = found
            mark = time.perf_counter()
        # Asking the rules again costs nothing: their decision is pinned with the first effect
        # it begins (one wait on the store, not two; until then nothing has begun). A model's
        # is pinned at once, so that an attempt held before its effects (the kill switch)
        # resumes on it without asking again; so is any decision an approval is asked for.
        defer = route.decider == RulesDecider.name and route.approval is None
        with self._tracing.span("verdict") as span:
            decision, verdict, pinned, pin = await self._rule(
                leased, event, route, decision, pinned, defer=defer
            )
            span.set(
                {
                    "autorunner.allowed": len(verdict.allowed),
                    "autorunner.denied": len(verdict.denied),
                    "autorunner.refused": verdict.refused,
                    "autorunner.decision_reused": pinned is not None,
                }
            )
        draft.decision, draft.reused, draft.verdict = decision, pinned is not None, verdict
        mark = _lap(draft, "verdict", mark)
        with self._tracing.span("approval") if route.approval else nullcontext() as span:
            gated = await gate(
                self._approvals,
                leased,
                event,
                route,
                verdict,
                valuers=self._valuers,
                now=self._clock(),
            )
            if span is not None and gated.record is not None:
                span.set(
                    {
                        "autorunner.approval": gated.record["approval_id"],
                        "autorunner.approval_status": gated.record["status"],
                    }
                )
        draft.verdict, draft.approval = gated.verdict, gated.record
        to_run, waiting = gated.to_run, gated.waiting
        for action in to_run:
            if self._closing:  # stopping: begin nothing more; the event is given back
                raise asyncio.CancelledError
            if (reason := await self.paused()) is not None:
                raise Held(reason)
            effect = await self._effect(leased, event, action, route, pin=pin)
            pin = None
            draft.effects.append(effect)
            if effect["status"] == "over_budget":
                draft.verdict = draft.verdict.deny(
                    action.step_id,
                    f"route {route.name!r} spent its budget of"
                    f" {route.constraints.max_effects_per_hour} effects an hour",
                )
        _lap(draft, "effects", mark)
        if waiting is not None:
            raise Awaiting(waiting)

    async def _rule(
        self,
        leased: Leased,
        event: Event,
        route: Route,
        decision: Decision,
        pinned: dict[str, Any] | None,
        *,
        defer: bool,
    ) -> tuple[Decision, Verdict, dict[str, Any] | None, Pin | None]:
        """The policy's verdict on ``decision``, which is pinned to the event when it allows
        anything; ``pinned`` is returned when an earlier pin (this one's or another's) rules.
        With ``defer`` the pin is returned instead, for the first effect to begin with."""
        verdict = check(decision, route, policy_hash=self.policy.hash, valuers=self._valuers)
        if pinned is None and verdict.allowed:
            # As the store keeps it (JSON turns a date into text): what it hands back compares.
            mine = orjson.loads(orjson.dumps(decision.to_dict()))
            if defer:
                pin = Pin(decision=mine, owner=leased.owner, generation=leased.generation)
                return decision, verdict, None, pin
            pinned = await self._ledger.pin_decision(
                event.event_id, mine, owner=leased.owner, generation=leased.generation
            )
            if pinned is None:
                raise Superseded("another attempt holds this event now: nothing was performed")
            if pinned == mine:
                pinned = None
            else:  # an earlier attempt reached its effects first: act on its decision
                decision = Decision.from_dict(pinned)
                verdict = check(
                    decision, route, policy_hash=self.policy.hash, valuers=self._valuers
                )
        return decision, verdict, pinned, None

    async def _query(self, event: Event, draft: _Draft) -> dict[str, Any] | None:
        """Auto's record of the event's query. When Auto refuses to give it (credentials,
        payment, a rejected request), the delivery's own facts decide and the run says so: a
        rotated key must not dead-letter every event. An outage is retried like any other."""
        try:
            return await self._context.query(event)
        except (AutoAuthError, AutoPaymentRequired, AutoRejected) as exc:
            draft.facts_error = str(exc)
            log.warning("facts.from_delivery", event_id=event.event_id, error=str(exc))
            return None

    async def _decide(
        self, event: Event, route: Route, envelope: Envelope, draft: _Draft
    ) -> Decision | None:
        """Fetch the route's context and ask its decider; ``None`` (recorded as a denied
        verdict with its reason) when the decider's output is not a valid proposal."""
        decider = self._deciders.get(route.decider)
        if decider is None:
            raise PermanentError(f"route {route.name!r} names unknown decider {route.decider!r}")
        mark = time.perf_counter()
        with self._tracing.span("context", {"autorunner.context": ",".join(route.context)}):
            draft.context = await self._context.fetch(event, route.context)
        mark = _lap(draft, "context", mark)
        attributes = {"autorunner.decider": route.decider, "autorunner.route": route.name}
        bound = asyncio.timeout(route.constraints.max_decision_seconds)
        try:
            with self._tracing.span("decide", attributes):
                try:
                    async with bound:
                        return await decider.decide(envelope, draft.context, route=route)
                except TimeoutError:
                    if not bound.expired():
                        raise  # the attempt's own time limit: retried
                    raise InvalidDecision(
                        f"deciding took longer than the route's"
                        f" {route.constraints.max_decision_seconds:g} s"
                    ) from None
        except InvalidDecision as exc:
            draft.decision = InvalidProposal(
                reason=str(exc), decider=route.decider, trace=exc.trace
            )
            draft.verdict = Verdict(
                allowed=(),
                denied=(),
                policy_hash=self.policy.hash,
                refused=f"invalid decision: {exc}",
            )
            return None
        finally:
            _lap(draft, "decide", mark)

    async def paused(self) -> str | None:
        """The kill switch's reason when set (``autorunner pause``), read at most every
        ``pause_check_seconds``: the switch takes effect within that time."""
        checked_at, reason = self._pause
        now = time.monotonic()
        if now - checked_at >= self._pause_ttl:
            reason = await self._flags.get_flag("paused")
            self._pause = (now, reason)
        return reason

    async def _effect(
        self, leased: Leased, event: Event, action: Action, route: Route, *, pin: Pin | None
    ) -> dict[str, Any]:
        adapter = self.adapters[action.kind]
        key = effect_key(event.event_id, action.step_id, leased.generation)
        at_least_once = adapter.delivery == "at_least_once"
        # Only an at-most-once adapter that waits before sending needs the ledger to mark the
        # moment its request leaves; for the others beginning is that moment (adapters.base).
        staged = adapter.waits_to_send and not at_least_once
        intent = EffectIntent(
            effect_key=key,
            event_id=event.event_id,
            step_id=action.step_id,
            kind=action.kind,
            params=action.params,
            route=route.name,
            budget=route.constraints.max_effects_per_hour,
        )
        attributes = {"autorunner.adapter": action.kind, "autorunner.effect_key": key}
        with self._tracing.span(f"effect {action.kind}", attributes) as span:
            entry = await self._perform(adapter, intent, event, action, staged=staged, pin=pin)
            span.set(
                {"autorunner.outcome": entry["status"], "autorunner.skipped": entry["skipped"]}
            )
            if entry["status"] == "unknown":
                span.fail("outcome unknown")
            return entry

    async def _perform(
        self,
        adapter: Adapter,
        intent: EffectIntent,
        event: Event,
        action: Action,
        *,
        staged: bool,
        pin: Pin | None,
    ) -> dict[str, Any]:
        """Begin ``intent`` in the ledger (with ``pin``: pinning the attempt's decision too),
        perform it when the ledger says so, and record its outcome; returns the run record's
        entry for it."""
        key = intent.effect_key
        at_least_once = adapter.delivery == "at_least_once"
        if pin is None:
            state = await self._ledger.begin_effect(
                intent, at_least_once=at_least_once, staged=staged
            )
        else:
            begun = await self._ledger.begin_first_effect(
                intent, pin, at_least_once=at_least_once, staged=staged
            )
            if begun is None:
                raise Superseded(
                    "another attempt holds this event or pinned its decision first:"
                    " nothing was performed"
                )
            state = begun
        entry: dict[str, Any] = {
            "effect_key": key,
            "kind": action.kind,
            "delivery": adapter.delivery,
        }
        if not state.proceed:
            log.info("effect.skipped", event_id=event.event_id, effect_key=key, status=state.status)
            return {**entry, "status": state.status, "skipped": True, "result": state.result}
        task = asyncio.current_task()

        async def sending() -> None:
            if self._closing:  # a stop reached this effect before its request left
                raise asyncio.CancelledError
            # From here a stop lets this task finish: the request and its ledger entry.
            self._sending.add(task)
            if staged and not await asyncio.shield(
                self._ledger.effect_sending(key, tries=state.tries)
            ):
                raise Superseded(f"{key} was taken over by another attempt before it was sent")

        def finish(status: EffectStatus, result: dict[str, Any]) -> Awaitable[None]:
            # Shielded: a cancel or a time limit landing here must not lose the outcome.
            return asyncio.shield(self._ledger.finish_effect(key, status=status, result=result))

        try:
            result = await adapter.execute(action, effect_key=key, event=event, sending=sending)
            await finish("done", result)
        except Superseded:
            raise  # the ledger entry is the other attempt's now
        except DeliveryUnknown as exc:
            if at_least_once:
                await finish("failed", {"error": str(exc)})
                raise
            # It may have been delivered: never resent by itself (``effects resolve`` settles it).
            await finish("unknown", {"error": str(exc)})
            log.warning("effect.unknown", event_id=event.event_id, effect_key=key, error=str(exc))
            return {**entry, "status": "unknown", "skipped": False, "result": {"error": str(exc)}}
        except JobError as exc:
            await finish("failed", {"error": str(exc)})
            raise
        finally:
            self._sending.discard(task)
        return {**entry, "status": "done", "skipped": False, "result": result}

    def close(self) -> None:
        """From now on no request leaves: an effect reaching its ``sending`` moment is cancelled
        instead (and stays ``planned``); requests already in flight finish."""
        self._closing = True

    def is_sending(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` has a request in flight (cancelling it would make it unknown)."""
        return task in self._sending


def _lap(draft: _Draft, name: str, mark: float) -> float:
    now = time.perf_counter()
    draft.timings_ms[name] = round((now - mark) * 1000, 3)
    return now
