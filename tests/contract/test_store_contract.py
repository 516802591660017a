"""The Store contract: every backend (memory, sqlite) must pass every test here."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from autorunner.queue.base import Job, Queue
from autorunner.store.base import Backend, EffectIntent, Operation, Resolved, RunRecord
from tests.helpers import FakeClock, make_event, raw_delivery

Backends = tuple[Backend, Queue]


def run(
    event_id: str, attempt: int = 1, outcome: str = "done", error: str | None = None
) -> RunRecord:
    return RunRecord(
        event_id=event_id,
        attempt=attempt,
        outcome=outcome,  # type: ignore[arg-type]
        started_at=0.0,
        finished_at=1.0,
        error=error,
    )


def intent(event_id: str = "evt-1", step: str = "notify") -> EffectIntent:
    return EffectIntent(
        effect_key=f"{event_id}:{step}",
        event_id=event_id,
        step_id=step,
        kind="notify",
        params={"text": "hi"},
    )


async def test_insert_is_new_once_per_event_id(backends: Backends) -> None:
    store, _ = backends
    first = await store.insert_event(make_event("e1"), raw_delivery())
    second = await store.insert_event(make_event("e1"), raw_delivery())
    assert first.inserted
    assert not second.inserted
    assert second.existing_id == "e1"


async def test_same_execution_under_another_event_id_is_a_duplicate(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("webhook-id", execution_id="exec-9"), raw_delivery())
    result = await store.insert_event(
        make_event("sse-id", execution_id="exec-9", channel="sse"), raw_delivery()
    )
    assert not result.inserted
    assert result.existing_id == "webhook-id"
    assert [e.event_id for e in await store.list_events(limit=10)] == ["webhook-id"]


async def test_events_without_execution_id_do_not_collide(backends: Backends) -> None:
    store, _ = backends
    assert (await store.insert_event(make_event("a"), raw_delivery())).inserted
    assert (await store.insert_event(make_event("b"), raw_delivery())).inserted


async def test_concurrent_inserts_of_one_event_store_it_exactly_once(backends: Backends) -> None:
    store, _ = backends
    results = await asyncio.gather(
        *(
            store.insert_event(make_event("race", execution_id="x"), raw_delivery())
            for _ in range(20)
        )
    )
    assert sum(r.inserted for r in results) == 1


async def test_acquire_leases_a_pending_event_to_one_owner(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    leased = await store.acquire("e1", owner="w1", lease=30)
    assert leased is not None
    assert leased.attempt == 1
    assert leased.event.event_id == "e1"
    assert await store.acquire("e1", owner="w2", lease=30) is None


async def test_expired_lease_can_be_taken_over(backends: Backends, clock: FakeClock) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    clock.advance(31)
    taken = await store.acquire("e1", owner="w2", lease=30)
    assert taken is not None
    assert taken.attempt == 2


async def test_extend_keeps_a_lease_alive(backends: Backends, clock: FakeClock) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    clock.advance(20)
    await store.extend(["e1"], owner="w1", lease=30)
    clock.advance(20)
    assert await store.acquire("e1", owner="w2", lease=30) is None


async def test_finished_event_is_never_acquired_again(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    await store.finish(run("e1"), owner="w1")
    assert await store.acquire("e1", owner="w1", lease=30) is None
    detail = await store.get_event("e1")
    assert detail is not None
    assert detail.summary.status == "done"
    assert [r.outcome for r in detail.runs] == ["done"]


async def test_finish_by_a_stale_owner_does_not_move_the_event(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    clock.advance(31)
    await store.acquire("e1", owner="w2", lease=30)
    await store.finish(run("e1", outcome="dead", error="x"), owner="w1", reason="stale")
    detail = await store.get_event("e1")
    assert detail is not None
    assert detail.summary.status == "running"
    assert await store.list_dead_letters(limit=10) == []


async def test_retry_returns_event_to_pending_at_its_time(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    await store.finish(run("e1", outcome="retry", error="boom"), owner="w1", retry_at=clock() + 100)
    assert await store.sweepable(older_than=clock(), limit=10) == []
    assert await store.sweepable(older_than=clock() + 100, limit=10) == ["e1"]
    again = await store.acquire("e1", owner="w1", lease=30)
    assert again is not None
    assert again.attempt == 2


async def test_dead_letter_then_redrive_resets_attempts(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    await store.finish(run("e1", outcome="dead"), owner="w1", reason="gave up")
    dead = await store.list_dead_letters(limit=10)
    assert [(d.event_id, d.reason) for d in dead] == [("e1", "gave up")]
    assert await store.redrive("e1") == ["e1"]
    assert await store.list_dead_letters(limit=10) == []
    leased = await store.acquire("e1", owner="w1", lease=30)
    assert leased is not None
    assert leased.attempt == 1


async def test_redrive_all_moves_only_dead_events(backends: Backends) -> None:
    store, _ = backends
    for event_id in ("d1", "d2", "ok"):
        await store.insert_event(make_event(event_id), raw_delivery())
        await store.acquire(event_id, owner="w", lease=30)
    await store.finish(run("d1", outcome="dead"), owner="w", reason="r")
    await store.finish(run("d2", outcome="dead"), owner="w", reason="r")
    await store.finish(run("ok"), owner="w")
    assert sorted(await store.redrive(None)) == ["d1", "d2"]
    assert await store.redrive("ok") == []


async def test_release_gives_the_lease_back_without_counting_the_attempt(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w1", lease=30)
    await store.release("e1", owner="w1")
    leased = await store.acquire("e1", owner="w2", lease=30)
    assert leased is not None
    assert leased.attempt == 1


async def test_sweepable_lists_unleased_and_lease_expired_events_only(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    for event_id in ("pending", "leased", "done"):
        await store.insert_event(make_event(event_id), raw_delivery())
    await store.acquire("leased", owner="w", lease=30)
    await store.acquire("done", owner="w", lease=30)
    await store.finish(run("done"), owner="w")
    assert await store.sweepable(older_than=clock(), limit=10) == ["pending"]
    clock.advance(31)
    assert sorted(await store.sweepable(older_than=clock(), limit=10)) == ["leased", "pending"]


async def test_effect_intent_then_done_is_skipped_with_its_result(backends: Backends) -> None:
    store, _ = backends
    first = await store.begin_effect(intent())
    assert first.proceed
    await store.finish_effect("evt-1:notify", status="done", result={"delivered": True})
    again = await store.begin_effect(intent())
    assert not again.proceed
    assert again.status == "done"
    assert again.result == {"delivered": True}


async def test_failed_effect_may_run_again(backends: Backends) -> None:
    store, _ = backends
    await store.begin_effect(intent())
    await store.finish_effect("evt-1:notify", status="failed", result={"error": "503"})
    assert (await store.begin_effect(intent())).proceed


async def test_effect_left_pending_by_a_crash_becomes_unknown_and_is_not_resent(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.begin_effect(intent())
    state = await store.begin_effect(intent())
    assert not state.proceed
    assert state.status == "unknown"
    assert not (await store.begin_effect(intent())).proceed


async def test_effect_left_pending_is_resent_for_at_least_once_adapters(backends: Backends) -> None:
    store, _ = backends
    await store.begin_effect(intent())
    assert (await store.begin_effect(intent(), at_least_once=True)).proceed


async def test_event_detail_holds_raw_delivery_runs_and_effects(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery('{"eventId":"e1"}'))
    await store.acquire("e1", owner="w", lease=30)
    await store.begin_effect(intent("e1"))
    await store.finish_effect("e1:notify", status="done", result={"ok": 1})
    await store.finish(run("e1"), owner="w")
    detail = await store.get_event("e1")
    assert detail is not None
    assert detail.raw.body == '{"eventId":"e1"}'
    assert detail.event == make_event("e1")
    assert [(e["effect_key"], e["status"], e["result"]) for e in detail.effects] == [
        ("e1:notify", "done", {"ok": 1})
    ]
    assert await store.get_event("missing") is None


async def test_stats_count_by_status_and_rejected(backends: Backends, clock: FakeClock) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.insert_event(make_event("e2"), raw_delivery())
    await store.acquire("e2", owner="w", lease=30)
    await store.finish(run("e2"), owner="w")
    await store.record_rejected("invalid_body", raw_delivery("nope"))
    stats = await store.stats()
    assert stats.counts == {"pending": 1, "done": 1}
    assert stats.oldest_unfinished_at == clock()
    assert stats.rejected == 1


async def test_stats_for_metrics_count_all_but_the_done_events(backends: Backends) -> None:
    store, _ = backends
    for event_id in ("e1", "e2", "e3", "e4"):
        await store.insert_event(make_event(event_id), raw_delivery())
    for event_id, outcome in (("e2", "done"), ("e3", "dead")):
        await store.acquire(event_id, owner="w", lease=30)
        await store.finish(run(event_id, outcome=outcome), owner="w", reason="r")
    await store.acquire("e4", owner="w", lease=30)
    stats = await store.stats(done=False)
    assert stats.counts == {"pending": 1, "running": 1, "dead": 1}
    await store.redrive("e3")
    assert (await store.stats(done=False)).counts == {"pending": 2, "running": 1}


async def test_list_events_filters_by_status(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.insert_event(make_event("e2"), raw_delivery())
    await store.acquire("e2", owner="w", lease=30)
    await store.finish(run("e2"), owner="w")
    assert [e.event_id for e in await store.list_events(limit=10, status="done")] == ["e2"]
    assert [e.event_id for e in await store.list_events(limit=10, status="pending")] == ["e1"]


async def test_runs_are_appended_never_overwritten_across_a_redrive(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w", lease=30)
    await store.finish(run("e1", attempt=1, outcome="dead", error="boom"), owner="w", reason="boom")
    await store.redrive("e1")
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    await store.finish(run("e1", attempt=leased.attempt), owner="w")
    detail = await store.get_event("e1")
    assert detail is not None
    assert [(r.attempt, r.outcome) for r in detail.runs] == [(1, "dead"), (1, "done")]


async def submit_and_lease(store: Backend, queue: Queue, event_id: str) -> Job:
    result = await store.insert_event(make_event(event_id), raw_delivery())
    if not result.queued:
        await queue.enqueue(event_id)
    [job] = await queue.claim("w", limit=1, lease=30, wait=0)
    assert await store.acquire(event_id, owner="w", lease=30) is not None
    return job


async def test_done_run_leaves_no_queue_entry_whoever_settles_it(
    backends: Backends, clock: FakeClock
) -> None:
    store, queue = backends
    job = await submit_and_lease(store, queue, "e1")
    if not await store.finish(run("e1"), owner="w"):
        await queue.ack(job)
    clock.advance(100)
    assert await queue.claim("w", limit=1, lease=30, wait=0) == []
    assert (await queue.stats()).depth == 0


async def test_retried_run_comes_back_on_the_queue_at_its_time(
    backends: Backends, clock: FakeClock
) -> None:
    store, queue = backends
    job = await submit_and_lease(store, queue, "e1")
    if not await store.finish(run("e1", outcome="retry"), owner="w", retry_at=clock() + 10):
        await queue.retry(job, delay=10)
    assert await queue.claim("w", limit=1, lease=30, wait=0) == []
    clock.advance(10)
    assert [j.event_id for j in await queue.claim("w", limit=1, lease=30, wait=0)] == ["e1"]


async def test_dead_run_is_dead_on_the_queue_too(backends: Backends, clock: FakeClock) -> None:
    store, queue = backends
    job = await submit_and_lease(store, queue, "e1")
    if not await store.finish(run("e1", outcome="dead"), owner="w", reason="r"):
        await queue.dead_letter(job, reason="r")
    clock.advance(100)
    assert await queue.claim("w", limit=1, lease=30, wait=0) == []
    assert (await queue.stats()).dead == 1


async def test_a_stale_owner_never_settles_the_queue_entry(
    backends: Backends, clock: FakeClock
) -> None:
    store, queue = backends
    await submit_and_lease(store, queue, "e1")
    clock.advance(31)
    [fresh] = await queue.claim("w2", limit=1, lease=30, wait=0)
    assert await store.acquire("e1", owner="w2", lease=30) is not None
    assert await store.finish(run("e1"), owner="w") is False
    assert (await queue.stats()).in_flight == 1
    assert fresh.event_id == "e1"


async def test_list_events_bounds_the_receive_time(backends: Backends, clock: FakeClock) -> None:
    store, _ = backends
    for n in range(3):
        await store.insert_event(make_event(f"e{n}"), raw_delivery())
        clock.advance(10)
    start = clock() - 30
    window = await store.list_events(limit=10, since=start + 10, until=start + 20)
    assert [e.event_id for e in window] == ["e1"]


async def test_the_first_pinned_decision_is_kept_and_survives_a_redrive(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    assert await store.pinned_decision("e1") is None
    first = {"actions": [{"step_id": "buy", "kind": "http", "params": {"usd": 10}}]}
    second = {"actions": [{"step_id": "sell", "kind": "http", "params": {"usd": 99}}]}
    assert await store.pin_decision("e1", first) == first
    assert await store.pin_decision("e1", second) == first
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    await store.finish(run("e1", outcome="dead"), owner="w", reason="boom")
    await store.redrive("e1")
    assert await store.pinned_decision("e1") == first


async def test_concurrent_pins_agree_on_one_decision(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    kept = await asyncio.gather(
        *(store.pin_decision("e1", {"actions": [], "n": n}) for n in range(8))
    )
    assert len({k["n"] for k in kept}) == 1


async def test_flags_are_set_read_and_cleared(backends: Backends) -> None:
    store, _ = backends
    assert await store.get_flag("paused") is None
    await store.set_flag("paused", "operator said so")
    await store.set_flag("paused", "still")
    assert await store.get_flag("paused") == "still"
    await store.set_flag("paused", None)
    assert await store.get_flag("paused") is None


async def test_a_route_budget_refuses_new_effects_once_spent_and_frees_up_after_an_hour(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends

    def budgeted(event_id: str) -> EffectIntent:
        return EffectIntent(
            effect_key=f"{event_id}:n",
            event_id=event_id,
            step_id="n",
            kind="notify",
            params={},
            route="desk",
            budget=2,
        )

    assert (await store.begin_effect(budgeted("a"))).proceed
    assert (await store.begin_effect(budgeted("b"))).proceed
    refused = await store.begin_effect(budgeted("c"))
    assert (refused.proceed, refused.status) == (False, "over_budget")
    assert (
        await store.begin_effect(budgeted("a"))
    ).status == "unknown"  # known keys are not budgeted again
    clock.advance(3601)
    assert (await store.begin_effect(budgeted("c"))).proceed


# -- the sending boundary: ``unknown`` only for a request that may have reached the remote ----


async def test_a_staged_effect_that_never_left_is_performed_again_even_at_most_once(
    backends: Backends,
) -> None:
    store, _ = backends
    first = await store.begin_effect(intent(), staged=True)
    assert (first.proceed, first.status) == (True, "planned")
    again = await store.begin_effect(intent(), staged=True)  # a crash while waiting for a slot
    assert (again.proceed, again.status) == (True, "planned")


async def test_a_staged_effect_becomes_unknown_only_after_its_request_left(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.begin_effect(intent(), staged=True)
    await store.effect_sending("evt-1:notify")
    assert (await store.list_effects(limit=5))[0]["status"] == "pending"
    state = await store.begin_effect(intent(), staged=True)  # a crash during the request
    assert (state.proceed, state.status) == (False, "unknown")


async def test_sending_marks_only_a_planned_effect(backends: Backends) -> None:
    store, _ = backends
    await store.begin_effect(intent())
    await store.finish_effect("evt-1:notify", status="done", result={"ok": True})
    await store.effect_sending("evt-1:notify")  # a late mark never reopens a finished effect
    assert (await store.list_effects(limit=5))[0]["status"] == "done"


async def test_a_planned_effect_counts_in_the_routes_budget(backends: Backends) -> None:
    store, _ = backends
    budgeted = EffectIntent(
        effect_key="e1:a",
        event_id="e1",
        step_id="a",
        kind="telegram",
        params={},
        route="r",
        budget=1,
    )
    assert (await store.begin_effect(budgeted, staged=True)).proceed
    other = EffectIntent(
        effect_key="e2:a",
        event_id="e2",
        step_id="a",
        kind="telegram",
        params={},
        route="r",
        budget=1,
    )
    assert (await store.begin_effect(other, staged=True)).status == "over_budget"
    assert (await store.begin_effect(budgeted, staged=True)).proceed  # not counted twice


# -- operators settle unknown effects and rerun finished events -----------------------------


def operation(action: str, event_id: str | None = "e1", target: str | None = None) -> Operation:
    return Operation(at=5.0, actor="ops@host", action=action, event_id=event_id, target=target)


async def unknown_effect(store: Backend, event_id: str = "e1") -> None:
    """A finished event whose one effect a crash left unknown."""
    await store.insert_event(make_event(event_id), raw_delivery())
    await store.acquire(event_id, owner="w", lease=30)
    await store.pin_decision(event_id, {"actions": ["pinned"]})
    await store.begin_effect(intent(event_id))
    assert (await store.begin_effect(intent(event_id))).status == "unknown"
    await store.finish(run(event_id), owner="w")


async def test_unknown_effects_are_counted_and_listed(backends: Backends) -> None:
    store, _ = backends
    await unknown_effect(store)
    assert (await store.stats()).unknown_effects == 1
    assert (await store.stats(done=False)).unknown_effects == 1
    [listed] = await store.list_effects(limit=10, status="unknown")
    assert (listed["effect_key"], listed["event_id"], listed["kind"]) == (
        "e1:notify",
        "e1",
        "notify",
    )
    assert await store.list_effects(limit=10, status="done") == []


async def test_resolving_an_unknown_effect_as_sent_finishes_it_and_journals_who(
    backends: Backends,
) -> None:
    store, _ = backends
    await unknown_effect(store)
    resolved = await store.resolve_effect(
        "e1:notify", resend=False, operation=operation("effects.resolve", target="e1:notify")
    )
    assert resolved == Resolved(event_id="e1", status="unknown", reopened=False)
    detail = await store.get_event("e1")
    assert detail is not None
    assert detail.summary.status == "done"
    assert [(e["status"], e["result"]["resolved"]) for e in detail.effects] == [("done", "sent")]
    assert [(o.action, o.actor, o.target) for o in detail.operations] == [
        ("effects.resolve", "ops@host", "e1:notify")
    ]
    assert (await store.stats()).unknown_effects == 0


async def test_resending_an_unknown_effect_reopens_its_event_on_the_pinned_decision(
    backends: Backends,
) -> None:
    store, _ = backends
    await unknown_effect(store)
    resolved = await store.resolve_effect(
        "e1:notify", resend=True, operation=operation("effects.resolve")
    )
    assert resolved == Resolved(event_id="e1", status="unknown", reopened=True)
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    assert (leased.pinned, leased.generation) == ({"actions": ["pinned"]}, 1)
    state = await store.begin_effect(intent("e1"))
    assert state.proceed


async def test_only_an_unknown_effect_can_be_resolved(backends: Backends) -> None:
    store, _ = backends
    assert await store.resolve_effect("nope:x", resend=True, operation=operation("r")) is None
    await store.begin_effect(intent())
    await store.finish_effect("evt-1:notify", status="done", result={"ok": True})
    resolved = await store.resolve_effect("evt-1:notify", resend=True, operation=operation("r"))
    assert resolved == Resolved(event_id="evt-1", status="done")
    assert await store.list_operations(limit=5) == []


async def test_a_rerun_starts_a_new_unpinned_generation_of_a_finished_event_only(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    assert await store.rerun("e1", operation=operation("events.rerun")) is None  # not finished
    assert await store.rerun("missing", operation=operation("events.rerun")) is None
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    await store.pin_decision("e1", {"actions": ["first"]})
    await store.finish(run("e1"), owner="w")
    assert await store.rerun("e1", operation=operation("events.rerun")) == 2
    again = await store.acquire("e1", owner="w", lease=30)
    assert again is not None
    assert (again.generation, again.pinned, again.attempt) == (2, None, 1)
    detail = await store.get_event("e1")
    assert detail is not None
    assert detail.generation == 2
    assert [o.action for o in detail.operations] == ["events.rerun"]


async def test_a_rerun_of_a_dead_event_may_carry_its_decision(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w", lease=30)
    await store.finish(run("e1", outcome="dead", error="boom"), owner="w", reason="boom")
    chosen = {"actions": ["chosen"], "policy_hash": "sha256:x"}
    assert await store.rerun("e1", operation=operation("events.rerun"), decision=chosen) == 2
    assert await store.list_dead_letters(limit=5) == []
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    assert leased.pinned == chosen


async def test_the_journal_lists_operations_newest_first_and_by_event(backends: Backends) -> None:
    store, _ = backends
    await store.record_operation(
        Operation(at=1.0, actor="a", action="pause", detail={"reason": "x"})
    )
    await store.record_operation(Operation(at=2.0, actor="a", action="resume"))
    assert [o.action for o in await store.list_operations(limit=10)] == ["resume", "pause"]
    assert (await store.list_operations(limit=10))[1].detail == {"reason": "x"}
    assert await store.list_operations(limit=10, event_id="e1") == []


async def test_list_events_filters_by_query_and_route_and_counts_effects(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    for event_id, query in (("e1", "q-a"), ("e2", "q-b"), ("e3", "q-a")):
        await store.insert_event(make_event(event_id, query_id=query), raw_delivery())
        clock.advance(1)
    await store.acquire("e1", owner="w", lease=30)
    await store.begin_effect(intent("e1", "tell"))
    await store.begin_effect(intent("e1", "order"))
    await store.finish_effect("e1:order", status="done", result={})
    await store.finish(replace(run("e1"), route="desk"), owner="w")
    by_query = await store.list_events(limit=10, query_id="q-a")
    assert [e.event_id for e in by_query] == ["e3", "e1"]
    [desk] = await store.list_events(limit=10, route="desk")
    assert (desk.event_id, desk.route, desk.effects) == ("e1", "desk", {"pending": 1, "done": 1})
    assert (await store.list_events(limit=10, query_id="q-b"))[0].effects == {}


async def test_an_event_is_found_by_any_id_it_arrived_under(backends: Backends) -> None:
    store, _ = backends
    first = make_event("exec-7", execution_id="exec-7", delivery_id="evt_hook_7")
    await store.insert_event(first, raw_delivery())
    late = make_event("exec-7", execution_id="exec-7", channel="sse", delivery_id="frame-uuid")
    assert (await store.insert_event(late, raw_delivery())).existing_id == "exec-7"
    other_id = make_event("notif-99", execution_id="exec-7", channel="sse")
    assert (await store.insert_event(other_id, raw_delivery())).existing_id == "exec-7"
    for held in ("exec-7", "evt_hook_7", "frame-uuid", "notif-99"):
        assert await store.find_event(held) == "exec-7"
    assert await store.find_event("nothing") is None
