"""The Store contract: every backend (memory, SQLite, PostgreSQL) must pass every test here; the
effect ledger's part is in test_ledger_contract.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from autorunner.queue.base import Queue
from autorunner.store.base import StoreBackend
from tests.contract.records import intent, leased_events, run, stored_events
from tests.helpers import FakeClock, make_event, raw_delivery

Backends = tuple[StoreBackend, Queue]


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


async def test_concurrent_leases_of_one_event_go_to_exactly_one_owner(backends: Backends) -> None:
    # On PostgreSQL they travel in one batch: the first as its many-row statement, the rest
    # after it, each finding the event taken.
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    leases = await asyncio.gather(*(store.acquire("e1", owner=f"w{n}", lease=30) for n in range(8)))
    [taken] = [lease for lease in leases if lease is not None]
    assert taken.attempt == 1


async def test_concurrent_leases_of_many_events_each_return_its_own_event(
    backends: Backends,
) -> None:
    store, _ = backends
    ids = await stored_events(store, 20)
    await store.acquire("e03", owner="earlier", lease=30)  # taken: not leased again
    leases = await asyncio.gather(*(store.acquire(i, owner=f"w-{i}", lease=30) for i in ids))
    for event_id, lease in zip(ids, leases, strict=True):
        if event_id == "e03":
            assert lease is None
        else:
            assert lease is not None
            assert (lease.event.event_id, lease.owner, lease.attempt) == (
                event_id,
                f"w-{event_id}",
                1,
            )


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


async def test_concurrent_finishes_of_many_events_move_each_for_its_owner_only_and_keep_each_run(
    backends: Backends, clock: FakeClock
) -> None:
    # On PostgreSQL they travel in one batch, the done ones as one many-row statement.
    store, _ = backends
    ids = await stored_events(store, 12)
    for event_id in ids:
        await store.acquire(event_id, owner=f"w-{event_id}", lease=30)
    clock.advance(5)
    finishes = [
        store.finish(
            replace(run(i, error=f"note {i}"), route=f"route-{i}"),
            owner="stale" if i == "e04" else f"w-{i}",
        )
        for i in ids
    ]
    # a second finish of e07 in the same batch, by a stale owner: its run kept, nothing moved
    finishes.append(store.finish(run("e07", attempt=2), owner="stale"))
    await asyncio.gather(*finishes)
    for event_id in ids:
        detail = await store.get_event(event_id)
        assert detail is not None
        summary = detail.summary
        if event_id == "e04":
            assert (summary.status, summary.finished_at, summary.route) == ("running", None, None)
        else:
            assert (summary.status, summary.finished_at) == ("done", clock())
            assert (summary.last_error, summary.route) == (f"note {event_id}", f"route-{event_id}")
        attempts = [1, 2] if event_id == "e07" else [1]
        assert sorted(r.attempt for r in detail.runs) == attempts
        assert {r.outcome for r in detail.runs} == {"done"}


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


async def test_list_events_bounds_the_receive_time(backends: Backends, clock: FakeClock) -> None:
    store, _ = backends
    for n in range(3):
        await store.insert_event(make_event(f"e{n}"), raw_delivery())
        clock.advance(10)
    start = clock() - 30
    window = await store.list_events(limit=10, since=start + 10, until=start + 20)
    assert [e.event_id for e in window] == ["e1"]


async def test_list_events_filters_by_the_events_symbol(backends: Backends) -> None:
    store, _ = backends
    for n, symbol in enumerate(["BTC", "ETH", None, "ETH"]):
        await store.insert_event(make_event(f"e{n}", symbol=symbol), raw_delivery())
    found = await store.list_events(limit=10, symbol="ETH")
    assert sorted(e.event_id for e in found) == ["e1", "e3"]


async def test_the_first_pinned_decision_is_kept_and_survives_a_redrive(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    leased = await store.acquire("e1", owner="w", lease=30)
    assert leased is not None
    assert leased.pinned is None
    first = {"actions": [{"step_id": "buy", "kind": "http", "params": {"usd": 10}}]}
    second = {"actions": [{"step_id": "sell", "kind": "http", "params": {"usd": 99}}]}
    assert await store.pin_decision("e1", first, owner="w", generation=1) == first
    assert await store.pin_decision("e1", second, owner="w", generation=1) == first
    await store.finish(run("e1", outcome="dead"), owner="w", reason="boom")
    await store.redrive("e1")
    again = await store.acquire("e1", owner="w", lease=30)
    assert again is not None
    assert again.pinned == first  # the next attempt acts on the kept decision


async def test_concurrent_pins_agree_on_one_decision(backends: Backends) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w", lease=30)
    kept = await asyncio.gather(
        *(
            store.pin_decision("e1", {"actions": [], "n": n}, owner="w", generation=1)
            for n in range(8)
        )
    )
    assert len({k["n"] for k in kept if k is not None}) == 1
    assert None not in kept


async def test_concurrent_pins_of_many_events_each_keep_their_own_decision(
    backends: Backends,
) -> None:
    store, _ = backends
    ids = await leased_events(store, 20)
    kept = await asyncio.gather(
        *(
            store.pin_decision(
                i, {"actions": [], "for": i}, owner="w" if i != "e07" else "x", generation=1
            )
            for i in ids
        )
    )
    assert [k and k["for"] for k in kept] == [None if i == "e07" else i for i in ids]


async def test_only_the_leases_owner_in_the_current_generation_can_pin(
    backends: Backends,
) -> None:
    store, _ = backends
    await store.insert_event(make_event("e1"), raw_delivery())
    await store.acquire("e1", owner="w", lease=30)
    assert await store.pin_decision("e1", {"n": 1}, owner="stale", generation=1) is None
    assert await store.pin_decision("e1", {"n": 1}, owner="w", generation=2) is None
    assert await store.pin_decision("e1", {"n": 1}, owner="w", generation=1) == {"n": 1}


async def test_flags_are_set_read_and_cleared(backends: Backends) -> None:
    store, _ = backends
    assert await store.get_flag("paused") is None
    await store.set_flag("paused", "operator said so")
    await store.set_flag("paused", "still")
    assert await store.get_flag("paused") == "still"
    await store.set_flag("paused", None)
    assert await store.get_flag("paused") is None


async def test_one_owner_leads_at_a_time_until_its_lease_lapses_or_it_renews(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    assert await store.lead("notifier", owner="a", ttl=10)
    assert not await store.lead("notifier", owner="b", ttl=10)
    clock.advance(9)
    assert await store.lead("notifier", owner="a", ttl=10)  # renewed: good until 19
    clock.advance(9)
    assert not await store.lead("notifier", owner="b", ttl=10)
    assert await store.lead("other", owner="b", ttl=10), "each name is its own lease"
    clock.advance(2)
    assert await store.lead("notifier", owner="b", ttl=10)  # a lapsed: b takes over
    assert not await store.lead("notifier", owner="a", ttl=10)
    assert await store.get_flag("notifier") is None, "a lease is not an operator flag"


async def test_events_stored_together_one_carrying_nul_characters_are_each_stored(
    backends: Backends,
) -> None:
    # On PostgreSQL the five inserts travel in one batch, whose many-row statement cannot carry
    # the NUL (jsonb refuses it): whichever way the batch then goes, every event is stored.
    store, _ = backends
    events = [make_event(f"e{n}", title="a\x00b" if n == 2 else "ab") for n in range(5)]
    results = await asyncio.gather(*(store.insert_event(e, raw_delivery()) for e in events))
    assert all(result.inserted for result in results)
    leased = await asyncio.gather(*(store.acquire(f"e{n}", owner="w", lease=30) for n in range(5)))
    titles = [lease.event.title if lease else None for lease in leased]
    assert titles[:2] == titles[3:] == ["ab", "ab"]
    assert titles[2] in ("a\x00b", "a\ufffdb")


async def test_an_event_carrying_nul_characters_is_stored_and_read_back(
    backends: Backends,
) -> None:
    # A signed body may escape U+0000 anywhere in its strings; PostgreSQL's jsonb refuses it,
    # so the store keeps U+FFFD there instead of failing the write (others keep NUL itself).
    store, _ = backends
    event = make_event("nul", title="a\x00b", payload={"k\x00": ["v\x00"]})
    result = await store.insert_event(event, raw_delivery('{"title":"a\\u0000b"}\x00'))
    assert result.inserted
    leased = await store.acquire("nul", owner="w1", lease=30)
    assert leased is not None
    assert leased.event.title in ("a\x00b", "a\ufffdb")
    assert list(leased.event.payload) in (["k\x00"], ["k\ufffd"])
    await store.record_rejected("reason with \x00", raw_delivery("body \x00"))
