"""The exchange adapter in paper mode, its caps, and the two gates before a live order."""

from __future__ import annotations

import importlib.util

import pytest

from autorunner.adapters.base import already_sending
from autorunner.adapters.exchange import ExchangeAdapter, client_order_id
from autorunner.decision import Action, Decision
from autorunner.errors import PermanentError
from autorunner.policy import Constraints, Route, check
from tests.helpers import kinds, make_event

EVENT = make_event("e1")


def order(**params: object) -> Action:
    base: dict[str, object] = {
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "market",
        "reference_price": 50_000.0,
    }
    return Action(step_id="buy", kind="exchange", params={**base, **params})


async def test_paper_order_is_recorded_with_a_simulated_fill_and_a_stable_client_id() -> None:
    adapter = ExchangeAdapter(max_notional_usd=500)
    result = await adapter.execute(
        order(notional_usd=250), effect_key="e1:buy", event=EVENT, sending=already_sending
    )
    assert result["mode"] == "paper"
    assert result["amount"] == pytest.approx(0.005)
    assert result["fill"] == {"amount": pytest.approx(0.005), "price": 50_000.0, "simulated": True}
    assert result["client_order_id"] == client_order_id("e1:buy")
    assert client_order_id("e1:buy") != client_order_id("e2:buy")
    assert len(client_order_id("e1:buy")) <= 32


async def test_the_adapters_own_cap_holds_whatever_the_policy_said() -> None:
    adapter = ExchangeAdapter(max_notional_usd=100)
    with pytest.raises(PermanentError, match="exceeds the adapter cap"):
        await adapter.execute(
            order(amount=1.0), effect_key="k", event=EVENT, sending=already_sending
        )


@pytest.mark.parametrize(
    "params",
    [
        {"symbol": "BTC"},
        {"side": "hold"},
        {"type": "stop"},
        {"amount": -1},
        {"reference_price": None},
        {"type": "limit", "price": None, "reference_price": None, "amount": 1},
    ],
)
async def test_malformed_orders_are_permanent_errors(params: dict[str, object]) -> None:
    with pytest.raises(PermanentError):
        await ExchangeAdapter().execute(
            order(**{"notional_usd": 10, **params}),
            effect_key="k",
            event=EVENT,
            sending=already_sending,
        )


async def test_live_needs_the_operator_switch() -> None:
    with pytest.raises(PermanentError, match="EXCHANGE_LIVE"):
        await ExchangeAdapter().execute(
            order(notional_usd=10, mode="live"),
            effect_key="k",
            event=EVENT,
            sending=already_sending,
        )


@pytest.mark.skipif(importlib.util.find_spec("ccxt") is not None, reason="ccxt is installed")
async def test_live_without_ccxt_says_how_to_install_it() -> None:
    adapter = ExchangeAdapter(live_enabled=True, api_key="k", secret="s")
    with pytest.raises(PermanentError, match=r"autorunner\[exchange\]"):
        await adapter.execute(
            order(notional_usd=10, mode="live"),
            effect_key="k",
            event=EVENT,
            sending=already_sending,
        )


def test_a_live_order_is_denied_unless_the_route_allows_live_trading() -> None:
    live_order = Decision(
        actions=(order(notional_usd=10, mode="live"),), rationale="r", decider="llm", version="v"
    )
    paper_order = Decision(
        actions=(order(notional_usd=10),), rationale="r", decider="llm", version="v"
    )
    kinds_ = kinds("exchange")
    paper_only = Route(name="r", objective="o", allowed_actions=("exchange",))
    live = Route(
        name="r",
        objective="o",
        allowed_actions=("exchange",),
        constraints=Constraints(live_trading=True),
    )
    assert [
        d.reason for d in check(live_order, paper_only, policy_hash="h", valuers=kinds_).denied
    ] == ["live trading is not enabled for route 'r'"]
    assert (
        check(paper_order, paper_only, policy_hash="h", valuers=kinds_).allowed
        == paper_order.actions
    )
    assert check(live_order, live, policy_hash="h", valuers=kinds_).allowed == live_order.actions
