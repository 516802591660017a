"""An attempt's first effect begins with its decision pinned, in one transaction
(``Ledger.begin_first_effect``), on every backend: the intent is recorded only under the
decision kept, only for the lease's owner in its generation, and never without the pin."""

from __future__ import annotations

import asyncio
import datetime
import math
from dataclasses import replace
from typing import Any

import pytest

from autorunner.queue.base import Queue
from autorunner.records import Pin
from autorunner.store.base import StoreBackend
from tests.contract.records import intent, leased_events, run

Backends = tuple[StoreBackend, Queue]


def decision(tag: str) -> dict[str, Any]:
    return {"actions": [{"step_id": "notify", "kind": "notify", "params": {"tag": tag}}]}


def pin(tag: str, *, owner: str = "w", generation: int = 1) -> Pin:
    return Pin(decision=decision(tag), owner=owner, generation=generation)


async def pinned_after(store: StoreBackend, event_id: str) -> dict[str, Any] | None:
    """The decision the event's next attempt is handed (it is finished dead and redriven)."""
    await store.finish(run(event_id, outcome="dead"), owner="w", reason="look")
    await store.redrive(event_id)
    leased = await store.acquire(event_id, owner="w", lease=30)
    assert leased is not None
    return leased.pinned


async def test_the_first_effect_begins_with_its_decision_pinned(backends: Backends) -> None:
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    state = await store.begin_first_effect(intent(event_id), pin("mine"))
    assert state is not None
    assert (state.proceed, state.status, state.tries) == (True, "pending", 1)
    assert await pinned_after(store, event_id) == decision("mine")


@pytest.mark.parametrize("budget", [None, 5])
async def test_a_decision_that_json_changes_still_begins_its_first_effect(
    backends: Backends, budget: int | None
) -> None:
    """A rule's date is text once stored, NaN is null: the decision kept is still this one,
    and its intent is recorded (the caller is never told nothing began when it did)."""
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    params = {"since": datetime.date(2025, 1, 1), "at": datetime.time(9, 30), "x": math.nan}
    dated = Pin(decision={"actions": [{"params": params}]}, owner="w", generation=1)
    first = replace(intent(event_id), route="desk", budget=budget)
    state = await store.begin_first_effect(first, dated)
    assert state is not None
    assert state.proceed
    assert not (await store.begin_effect(first)).proceed  # its intent is there


async def test_a_staged_first_effect_begins_planned(backends: Backends) -> None:
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    state = await store.begin_first_effect(intent(event_id), pin("mine"), staged=True)
    assert state is not None
    assert (state.proceed, state.status) == (True, "planned")
    assert await store.effect_sending(f"{event_id}:notify", tries=state.tries)


async def test_a_stale_owner_or_generation_begins_nothing_and_pins_nothing(
    backends: Backends,
) -> None:
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    assert await store.begin_first_effect(intent(event_id), pin("old", owner="stale")) is None
    assert await store.begin_first_effect(intent(event_id), pin("old", generation=2)) is None
    # Nothing was recorded: the owner's own first effect begins as the first try, under its pin.
    state = await store.begin_first_effect(intent(event_id), pin("mine"))
    assert state is not None
    assert (state.proceed, state.tries) == (True, 1)
    assert await pinned_after(store, event_id) == decision("mine")


async def test_under_another_pinned_decision_the_first_effect_begins_nothing(
    backends: Backends,
) -> None:
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    assert await store.pin_decision(event_id, decision("first"), owner="w", generation=1)
    assert await store.begin_first_effect(intent(event_id), pin("second")) is None
    assert (await store.begin_effect(intent(event_id))).proceed  # no intent was recorded
    assert await pinned_after(store, event_id) == decision("first")


async def test_a_first_effect_whose_key_exists_is_decided_as_begin_effect_decides(
    backends: Backends,
) -> None:
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    await store.begin_effect(intent(event_id))
    await store.finish_effect(f"{event_id}:notify", status="done", result={"sent": 1})
    state = await store.begin_first_effect(intent(event_id), pin("mine"))
    assert state is not None
    assert (state.proceed, state.status, state.result) == (False, "done", {"sent": 1})
    assert await pinned_after(store, event_id) == decision("mine")


async def test_a_budgeted_first_effect_is_counted_and_pinned_even_when_refused(
    backends: Backends,
) -> None:
    store, _ = backends
    ids = await leased_events(store, 2)
    budgeted = [replace(intent(i), route="desk", budget=1) for i in ids]
    first = await store.begin_first_effect(budgeted[0], pin("a"))
    refused = await store.begin_first_effect(budgeted[1], pin("b"))
    assert first is not None
    assert first.proceed
    assert refused is not None
    assert (refused.proceed, refused.status) == (False, "over_budget")
    assert await pinned_after(store, ids[1]) == decision("b")
    stale = await store.begin_first_effect(
        replace(intent(ids[0], step="other"), route="desk", budget=9), pin("x", owner="stale")
    )
    assert stale is None


async def test_concurrent_first_effects_of_many_events_each_keep_their_own(
    backends: Backends,
) -> None:
    store, _ = backends
    ids = await leased_events(store, 20)
    await store.pin_decision("e05", decision("earlier"), owner="w", generation=1)
    states = await asyncio.gather(
        *(
            store.begin_first_effect(intent(i), pin(i, owner="x" if i == "e07" else "w"))
            for i in ids
        )
    )
    assert [s is not None and s.proceed for s in states] == [i not in ("e05", "e07") for i in ids]
    # Whatever else ran in the same batch, each event kept its own decision and intent.
    again = await asyncio.gather(*(store.begin_effect(intent(i)) for i in ids))
    assert [a.proceed for a in again] == [i in ("e05", "e07") for i in ids]
    for event_id in ids:
        expected = {"e05": decision("earlier"), "e07": None}.get(event_id, decision(event_id))
        assert await pinned_after(store, event_id) == expected


async def test_two_first_effects_of_one_event_at_once_begin_once_under_one_decision(
    backends: Backends,
) -> None:
    store, _ = backends
    [event_id] = await leased_events(store, 1)
    states = await asyncio.gather(
        *(store.begin_first_effect(intent(event_id), pin(f"d{n}")) for n in range(6))
    )
    begun = [n for n, s in enumerate(states) if s is not None and s.proceed]
    assert len(begun) == 1
    assert states.count(None) == 5  # the others began nothing
    assert await pinned_after(store, event_id) == decision(f"d{begun[0]}")
