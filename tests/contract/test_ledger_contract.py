"""The effect ledger's part of the Store contract, on every backend: an effect's intent proceeds
once however many ask at once, its result is kept, one left pending by a crash is never resent
blindly, and a route's budget refuses new effects once spent."""

from __future__ import annotations

import asyncio

from autorunner.queue.base import Queue
from autorunner.records import EffectIntent
from autorunner.store.base import StoreBackend
from tests.contract.records import intent
from tests.helpers import FakeClock

Backends = tuple[StoreBackend, Queue]


async def test_effect_intent_then_done_is_skipped_with_its_result(backends: Backends) -> None:
    store, _ = backends
    first = await store.begin_effect(intent())
    assert first.proceed
    await store.finish_effect("evt-1:notify", status="done", result={"delivered": True})
    again = await store.begin_effect(intent())
    assert not again.proceed
    assert again.status == "done"
    assert again.result == {"delivered": True}


async def test_concurrent_intents_of_one_effect_let_exactly_one_proceed(backends: Backends) -> None:
    store, _ = backends
    states = await asyncio.gather(*(store.begin_effect(intent()) for _ in range(8)))
    assert sum(state.proceed for state in states) == 1


async def test_concurrent_effects_of_many_keys_each_proceed_and_keep_their_own_result(
    backends: Backends,
) -> None:
    store, _ = backends
    intents = [intent(f"evt-{n:02}") for n in range(20)]
    started = await asyncio.gather(*(store.begin_effect(each) for each in intents))
    assert all(state.proceed for state in started)
    await asyncio.gather(
        *(
            store.finish_effect(each.effect_key, status="done", result={"n": n})
            for n, each in enumerate(intents)
        )
    )
    again = await asyncio.gather(*(store.begin_effect(each) for each in intents))
    assert [(state.proceed, state.status, state.result) for state in again] == [
        (False, "done", {"n": n}) for n in range(20)
    ]


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
