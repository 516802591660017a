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
    merged = {**base, **params}
    return Action(
        step_id="buy", kind="exchange", params={k: v for k, v in merged.items() if v is not None}
    )


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


class FakeExchange:
    """The calls of a ccxt async exchange the adapter makes, over one in-memory market."""

    def __init__(self, *, bid: float, ask: float, contract_size: float | None = None) -> None:
        self.bid, self.ask, self.contract_size = bid, ask, contract_size
        self.orders: list[tuple[object, ...]] = []

    async def load_markets(self) -> dict[str, object]:
        return {}

    def market(self, symbol: str) -> dict[str, object]:
        return {"symbol": symbol, "contractSize": self.contract_size}

    async def fetch_ticker(self, symbol: str) -> dict[str, object]:
        return {"symbol": symbol, "bid": self.bid, "ask": self.ask, "last": self.bid}

    async def create_order(self, *args: object) -> dict[str, object]:
        self.orders.append(args)
        return {"id": f"o-{len(self.orders)}", "status": "open"}


def live(exchange: FakeExchange) -> ExchangeAdapter:
    return ExchangeAdapter(
        live_enabled=True, api_key="k", secret="s", max_notional_usd=10_000, client=exchange
    )


@pytest.mark.parametrize(
    ("params", "market"),
    [
        pytest.param(
            {"type": "market", "amount": 10, "price": 1, "reference_price": None},
            FakeExchange(bid=99_900, ask=100_000),
            id="market-buy-with-a-made-up-price",
        ),
        pytest.param(
            {"side": "sell", "type": "limit", "amount": 1, "price": 100},
            FakeExchange(bid=99_900, ask=100_000),
            id="sell-limit-far-below-the-bid",
        ),
        pytest.param(
            {"symbol": "PEPE/USDT:USDT", "amount": 1, "reference_price": 5},
            FakeExchange(bid=5, ask=5, contract_size=1000),
            id="a-contract-of-a-thousand",
        ),
    ],
)
async def test_a_live_order_the_market_values_above_its_stated_notional_is_not_sent(
    params: dict[str, object], market: FakeExchange
) -> None:
    with pytest.raises(PermanentError, match="at the market"):
        await live(market).execute(
            order(mode="live", **params), effect_key="k", event=EVENT, sending=already_sending
        )
    assert market.orders == []


async def test_an_honest_live_order_is_placed_with_its_client_order_id() -> None:
    market = FakeExchange(bid=49_900, ask=50_100)
    result = await live(market).execute(
        order(mode="live", amount=0.01), effect_key="e1:buy", event=EVENT, sending=already_sending
    )
    assert result["exchange_order"] == {"id": "o-1", "status": "open"}
    [(symbol, kind, side, amount, price, params)] = market.orders
    assert (symbol, kind, side, amount, price) == ("BTC/USDT", "market", "buy", 0.01, None)
    assert params == {"clientOrderId": client_order_id("e1:buy")}
