"""The Store contract, continued: the ledger's sending boundary, what operators do (resolve an
unknown effect, rerun an event, the journal) and what they read. Every backend passes it."""

from __future__ import annotations

from dataclasses import replace

from autorunner.queue.base import Queue
from autorunner.records import EffectIntent, Operation, Resolved, WorkerBeat
from autorunner.store.base import StoreBackend
from autorunner.store.rules import TALLY_RETENTION, WORKER_RETENTION
from tests.contract.records import intent, run
from tests.helpers import FakeClock, make_event, raw_delivery

Backends = tuple[StoreBackend, Queue]


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
    begun = await store.begin_effect(intent(), staged=True)
    assert await store.effect_sending("evt-1:notify", tries=begun.tries)
    assert (await store.list_effects(limit=5))[0]["status"] == "pending"
    state = await store.begin_effect(intent(), staged=True)  # a crash during the request
    assert (state.proceed, state.status) == (False, "unknown")


async def test_sending_marks_only_a_planned_effect(backends: Backends) -> None:
    store, _ = backends
    await store.begin_effect(intent())
    await store.finish_effect("evt-1:notify", status="done", result={"ok": True})
    # A late mark never reopens a finished effect.
    assert not await store.effect_sending("evt-1:notify", tries=1)
    assert (await store.list_effects(limit=5))[0]["status"] == "done"


async def test_only_the_try_that_holds_a_planned_effect_may_send_it(backends: Backends) -> None:
    store, _ = backends
    stalled = await store.begin_effect(intent(), staged=True)  # waits for its slot, lease lapses
    taken = await store.begin_effect(intent(), staged=True)  # another attempt takes it over
    assert (stalled.tries, taken.tries) == (1, 2)
    assert not await store.effect_sending("evt-1:notify", tries=stalled.tries)
    assert await store.effect_sending("evt-1:notify", tries=taken.tries)
    assert not await store.effect_sending("evt-1:notify", tries=taken.tries)  # once


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


async def unknown_effect(store: StoreBackend, event_id: str = "e1") -> None:
    """A finished event whose one effect a crash left unknown."""
    await store.insert_event(make_event(event_id), raw_delivery())
    await store.acquire(event_id, owner="w", lease=30)
    await store.pin_decision(event_id, {"actions": ["pinned"]}, owner="w", generation=1)
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


async def test_a_resend_is_refused_while_the_event_runs_or_after_it_was_rerun(
    backends: Backends,
) -> None:
    store, _ = backends
    await unknown_effect(store)
    await store.resolve_effect("e1:notify", resend=True, operation=operation("r"))
    leased = await store.acquire("e1", owner="w", lease=30)  # the resend's attempt runs
    assert leased is not None
    assert (await store.begin_effect(intent("e1"))).proceed
    assert (await store.begin_effect(intent("e1"))).status == "unknown"  # cut off again
    running = await store.resolve_effect("e1:notify", resend=True, operation=operation("r"))
    assert running is not None
    assert running.refused == "its event is running: wait until it finishes, then resend"
    await store.finish(run("e1"), owner="w")
    assert await store.rerun("e1", operation=operation("events.rerun")) == 2
    stale = await store.resolve_effect("e1:notify", resend=True, operation=operation("r"))
    assert stale is not None
    assert stale.refused is not None
    assert stale.refused.startswith("effect 'e1:notify' belongs to decision generation 1")
    sent = await store.resolve_effect("e1:notify", resend=False, operation=operation("r"))
    assert sent == Resolved(event_id="e1", status="unknown")  # marking it sent stays possible


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
    await store.pin_decision("e1", {"actions": ["first"]}, owner="w", generation=1)
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


async def test_workers_are_listed_by_their_last_heartbeat_and_forgotten_when_they_stop(
    backends: Backends,
) -> None:
    store, _ = backends
    for name, at in (("w1", 10.0), ("w2", 20.0), ("w1", 30.0)):
        await store.beat(
            WorkerBeat(name=name, role="worker", started_at=1.0, heartbeat_at=at, in_flight=2)
        )
    assert [(w.name, w.heartbeat_at) for w in await store.list_workers()] == [
        ("w1", 30.0),
        ("w2", 20.0),
    ]
    await store.forget_worker("w1")
    assert [w.name for w in await store.list_workers()] == ["w2"]
    later = 20.0 + WORKER_RETENTION + 1
    await store.beat(
        WorkerBeat(name="w3", role="serve", started_at=later, heartbeat_at=later, in_flight=0)
    )
    assert [w.name for w in await store.list_workers()] == ["w3"]  # w2 was silent a day


async def test_stats_count_lapsed_leases_and_duplicate_deliveries(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1", execution_id="x1"), raw_delivery())
    await store.insert_event(make_event("e1", execution_id="x1"), raw_delivery())
    await store.insert_event(make_event("other", execution_id="x1"), raw_delivery())
    await store.acquire("e1", owner="w", lease=30)
    assert (await store.stats()).lapsed_leases == 0
    clock.advance(31)
    stats = await store.stats()
    assert (stats.lapsed_leases, stats.duplicates) == (1, 2)
    assert (await store.stats(done=False)).duplicates == 0  # not counted on every scrape
    [summary] = await store.list_events(limit=5)
    assert summary.duplicates == 2


async def test_rejected_deliveries_are_listed_newest_first(backends: Backends) -> None:
    store, _ = backends
    await store.record_rejected("invalid_body", raw_delivery("first"))
    await store.record_rejected("invalid_body", raw_delivery("second"))
    listed = await store.list_rejected(limit=1)
    assert [(r.reason, r.body) for r in listed] == [("invalid_body", "second")]


# -- operators' acts journaled with the change they make; tallies; dead letters filtered -------


async def test_a_redrive_journals_each_event_it_moves_and_nothing_else(backends: Backends) -> None:
    store, _ = backends
    for event_id in ("d1", "d2", "ok"):
        await store.insert_event(make_event(event_id), raw_delivery())
        await store.acquire(event_id, owner="w", lease=30)
    await store.finish(run("d1", outcome="dead"), owner="w", reason="r")
    await store.finish(run("d2", outcome="dead"), owner="w", reason="r")
    await store.finish(run("ok"), owner="w")
    act = Operation(at=5.0, actor="ann", action="dlq.redrive")
    assert sorted(await store.redrive(None, operation=act)) == ["d1", "d2"]
    assert await store.redrive("ok", operation=act) == []
    journal = await store.list_operations(limit=10)
    assert sorted((o.event_id, o.actor, o.action) for o in journal) == [
        ("d1", "ann", "dlq.redrive"),
        ("d2", "ann", "dlq.redrive"),
    ]


async def test_setting_a_flag_journals_the_act_with_it(backends: Backends) -> None:
    store, _ = backends
    await store.set_flag("paused", "desk", operation=Operation(at=1.0, actor="ann", action="pause"))
    await store.set_flag("paused", None, operation=Operation(at=2.0, actor="bo", action="resume"))
    assert await store.get_flag("paused") is None
    journal = await store.list_operations(limit=10)
    assert [(o.actor, o.action) for o in journal] == [("bo", "resume"), ("ann", "pause")]


async def test_dead_letters_filter_by_reason_contained_and_by_route(backends: Backends) -> None:
    store, _ = backends
    for event_id, route, reason in (
        ("a", "orders", "exchange said 503"),
        ("b", "orders", "policy: denied"),
        ("c", "news", "exchange said 503"),
    ):
        await store.insert_event(make_event(event_id), raw_delivery())
        await store.acquire(event_id, owner="w", lease=30)
        await store.finish(
            replace(run(event_id, outcome="dead"), route=route), owner="w", reason=reason
        )

    async def ids(**filters: str) -> list[str]:
        return sorted(d.event_id for d in await store.list_dead_letters(limit=10, **filters))

    assert await ids(reason="said 503") == ["a", "c"]
    assert await ids(reason="SAID") == []  # as written: no case folding, no pattern
    assert await ids(reason="%") == []
    assert await ids(route="orders") == ["a", "b"]
    assert await ids(reason="503", route="orders") == ["a"]
    assert await ids() == ["a", "b", "c"]


async def test_tallies_add_up_across_flushes_and_count_only_the_window(backends: Backends) -> None:
    store, _ = backends
    await store.add_tallies(100, {"refused:bad_signature": 3, "runs:done": 5})
    await store.add_tallies(100, {"refused:bad_signature": 2})  # a second process, same minute
    await store.add_tallies(160, {"runs:done": 1, "runs:dead": 1})
    assert await store.tallies(since_minute=101) == {"runs:done": 1, "runs:dead": 1}
    assert await store.tallies(since_minute=100) == {
        "refused:bad_signature": 5,
        "runs:done": 6,
        "runs:dead": 1,
    }


async def test_tallies_older_than_the_retention_are_forgotten(backends: Backends) -> None:
    store, _ = backends
    await store.add_tallies(10, {"runs:done": 1})
    await store.add_tallies(10 + TALLY_RETENTION + 1, {"runs:done": 2})
    assert await store.tallies(since_minute=0) == {"runs:done": 2}


async def test_count_received_counts_from_a_time_up_to_a_cap(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    start = clock()
    for n in range(4):
        await store.insert_event(make_event(f"r{n}"), raw_delivery())
        clock.advance(10)
    assert await store.count_received(since=start + 15, cap=100) == 2
    assert await store.count_received(since=start, cap=3) == 3
    assert await store.count_received(since=start + 100, cap=100) == 0
