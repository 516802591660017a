"""The Spend contract: reservations are all-or-nothing, never pass a limit however many race for
it, and settle into what was spent — on every backend."""

from __future__ import annotations

import asyncio

from autorunner.queue.base import Queue
from autorunner.records import SpendClaim
from autorunner.store.base import StoreBackend

Backends = tuple[StoreBackend, Queue]
DAY = "2026-12-07"


def claims(usd: float, tokens: int = 100, *, route_usd: float | None = 1.0) -> list[SpendClaim]:
    micro = round(usd * 1e6)
    return [
        SpendClaim(scope="global", micro_usd=micro, tokens=tokens, limit_micro_usd=5_000_000),
        SpendClaim(
            scope="route:btc",
            micro_usd=micro,
            tokens=tokens,
            limit_micro_usd=None if route_usd is None else round(route_usd * 1e6),
            limit_tokens=10_000,
        ),
    ]


async def test_a_reservation_is_all_or_nothing_and_names_the_scope_that_refused(
    backends: Backends,
) -> None:
    store, _ = backends
    assert await store.reserve_spend(DAY, claims(0.6)) is None
    assert await store.reserve_spend(DAY, claims(0.6)) == "route:btc"
    spend = {v.scope: v for v in await store.spend_of(DAY)}
    assert spend["global"].reserved_micro_usd == 600_000  # the refused claim added nothing
    assert spend["route:btc"].reserved_micro_usd == 600_000
    assert await store.spend_of("2026-12-06") == []


async def test_settling_releases_the_reservation_and_counts_the_spend(backends: Backends) -> None:
    store, _ = backends
    reserved = claims(0.5, tokens=1000)
    assert await store.reserve_spend(DAY, reserved) is None
    await store.settle_spend(DAY, reserved, micro_usd=120_000, tokens=300)
    [everything, route] = await store.spend_of(DAY)
    assert (everything.scope, route.scope) == ("global", "route:btc")
    assert (route.spent_micro_usd, route.spent_tokens) == (120_000, 300)
    assert (route.reserved_micro_usd, route.reserved_tokens) == (0, 0)
    assert await store.reserve_spend(DAY, claims(0.88)) is None  # 0.12 spent + 0.88 = 1.00


async def test_a_token_limit_refuses_as_a_dollar_limit_does(backends: Backends) -> None:
    store, _ = backends
    assert await store.reserve_spend(DAY, claims(0.01, tokens=9_000)) is None
    assert await store.reserve_spend(DAY, claims(0.01, tokens=1_001)) == "route:btc"


async def test_a_burst_racing_for_the_last_dollar_never_reserves_past_the_limit(
    backends: Backends,
) -> None:
    store, _ = backends
    results = await asyncio.gather(*(store.reserve_spend(DAY, claims(0.1)) for _ in range(40)))
    assert results.count(None) == 10
    route = {v.scope: v for v in await store.spend_of(DAY)}["route:btc"]
    assert route.reserved_micro_usd == 1_000_000
