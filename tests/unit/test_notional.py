"""The notional contract: a cap cannot be bypassed by where an amount is written (pure).

The route under test is the README's own policy, read from the README, so the example a new user
copies is the one these tests hold to the contract.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from autorunner.decision import Action, Decision
from autorunner.notional import Malformed, Unvalued, Valued, order_notional, parse_order
from autorunner.policy import Policy, Route, check
from autorunner.policy_file import load_policy
from tests.helpers import VALUERS, readme_policy


def readme(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(readme_policy())
    return load_policy(path)


def btc_route(tmp_path: Path, **constraints: Any) -> Route:
    route = next(r for r in readme(tmp_path).routes if r.name == "btc")
    return dataclasses.replace(
        route,
        allowed_actions=(*route.allowed_actions, "exchange"),
        constraints=dataclasses.replace(route.constraints, **constraints),
    )


def verdict_of(route: Route, kind: str, params: dict[str, Any]) -> str:
    """``"allowed"`` or the reason the action was denied."""
    decision = Decision(
        actions=(Action(step_id="s", kind=kind, params=params),),
        rationale="t",
        decider="llm",
        version="t",
    )
    verdict = check(decision, route, policy_hash="h", valuers=VALUERS)
    return "allowed" if verdict.allowed else verdict.denied[0].reason


def test_the_readme_policy_caps_orders_at_500_usd(tmp_path: Path) -> None:
    assert btc_route(tmp_path).constraints.max_notional_usd == 500


def test_the_readme_rule_itself_follows_the_contract_and_is_allowed(tmp_path: Path) -> None:
    route = btc_route(tmp_path)
    [order] = [a for a in route.rules[0].actions if a.kind == "http"]
    assert verdict_of(route, "http", order.params) == "allowed"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        pytest.param(
            {"endpoint": "orders", "body": {"symbol": "BTC", "notional_usd": 100_000}},
            "notional 100000 USD exceeds the route's cap of 500 USD",
            id="canonical-place-over-cap",
        ),
        pytest.param(
            {"endpoint": "orders", "notional_usd": 100, "body": {"notional_usd": 100_000}},
            "http action has unknown param(s) 'notional_usd'",
            id="a-small-amount-beside-the-body",
        ),
        pytest.param(
            {"endpoint": "orders", "body": {"symbol": "BTC", "amount_usd": 100_000}},
            "notional cannot be determined (endpoint 'orders' carries its amount at"
            " body.notional_usd, which is missing)",
            id="model-forgets-the-canonical-field",
        ),
        pytest.param(
            {"endpoint": "orders", "body": {"order": {"notional_usd": 100_000}}},
            "notional cannot be determined",
            id="nested-elsewhere",
        ),
        pytest.param(
            {"endpoint": "orders", "body": {"notional_usd": "100000"}},
            "body.notional_usd of endpoint 'orders' is '100000', not a non-negative number",
            id="amount-as-text",
        ),
        pytest.param(
            {"endpoint": "orders", "body": {"notional_usd": -1}},
            "not a non-negative number",
            id="negative",
        ),
        pytest.param(
            {"endpoint": "orders", "body": {"notional_usd": float("inf")}},
            "not a non-negative number",
            id="infinite",
        ),
        pytest.param(
            {"endpoint": "orders", "body": {"notional_usd": True}},
            "not a non-negative number",
            id="boolean",
        ),
        pytest.param(
            {"endpoint": "orders", "body": "notional_usd=100"},
            "notional cannot be determined",
            id="body-not-an-object",
        ),
        pytest.param(
            {"endpoint": "nowhere", "body": {"notional_usd": 1}},
            "http endpoint 'nowhere' is not configured",
            id="unknown-endpoint",
        ),
    ],
)
def test_an_http_order_over_or_around_the_cap_is_denied(
    tmp_path: Path, params: dict[str, Any], reason: str
) -> None:
    assert reason in verdict_of(btc_route(tmp_path), "http", params)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        pytest.param(
            {"symbol": "BTC/USDT", "side": "buy", "amount": 10, "price": 100_000},
            "notional 1e+06 USD exceeds the route's cap of 500 USD",
            id="amount-times-price",
        ),
        pytest.param(
            {
                "symbol": "BTC/USDT",
                "side": "buy",
                "amount": 10,
                "price": 100_000,
                "notional_usd": 100,
            },
            "notional 1e+06 USD exceeds",
            id="a-small-declared-notional-beside-a-large-order",
        ),
        pytest.param(
            {"symbol": "BTC/USDT", "side": "buy", "type": "market", "amount": 10},
            "notional cannot be determined (a market order without a price)",
            id="market-order-without-price",
        ),
        pytest.param(
            {"symbol": "ETH/BTC", "side": "buy", "amount": 1000, "price": 0.05},
            "notional cannot be determined (ETH/BTC is not quoted in USD)",
            id="not-quoted-in-usd",
        ),
        pytest.param(
            {"symbol": "BTC/USDT", "side": "buy", "size": 10, "notional_usd": 100, "price": 1},
            "exchange order has unknown param(s) 'size'",
            id="amount-in-a-field-the-adapter-ignores",
        ),
        pytest.param(
            {"symbol": "BTC/USDT", "side": "buy", "amount": "10", "price": 100_000},
            "exchange order amount '10' is not a positive number",
            id="amount-as-text",
        ),
        pytest.param(
            {"symbol": "BTC/USDT", "side": "buy", "notional_usd": 100},
            "exchange order gives notional_usd without a USD price to size it",
            id="notional-without-price",
        ),
    ],
)
def test_an_exchange_order_is_valued_from_amount_and_price_and_capped(
    tmp_path: Path, params: dict[str, Any], reason: str
) -> None:
    assert reason in verdict_of(btc_route(tmp_path), "exchange", params)


def test_orders_inside_the_cap_are_allowed_by_each_kinds_contract(tmp_path: Path) -> None:
    route = btc_route(tmp_path)
    assert verdict_of(route, "http", {"endpoint": "orders", "body": {"notional_usd": 500}}) == (
        "allowed"
    )
    small = {"symbol": "BTC/USDT:USDT", "side": "sell", "amount": 0.001, "price": 100_000}
    assert verdict_of(route, "exchange", small) == "allowed"
    sized = {"symbol": "BTC/USDC", "side": "buy", "notional_usd": 100, "reference_price": 50_000}
    assert verdict_of(route, "exchange", sized) == "allowed"


def test_an_endpoint_declared_moneyless_is_not_capped(tmp_path: Path) -> None:
    params = {"endpoint": "tickets", "body": {"notional_usd": 10**9}}
    assert verdict_of(btc_route(tmp_path), "http", params) == "allowed"


def test_without_a_cap_an_unvalued_order_passes_but_a_malformed_one_never_does(
    tmp_path: Path,
) -> None:
    uncapped = btc_route(tmp_path, max_notional_usd=None)
    market = {"symbol": "BTC/USDT", "side": "buy", "amount": 10}
    assert verdict_of(uncapped, "exchange", market) == "allowed"
    assert verdict_of(uncapped, "http", {"endpoint": "orders", "body": {}}) == "allowed"
    assert "unknown param" in verdict_of(uncapped, "exchange", {**market, "qty": 3})


def test_parse_order_derives_the_amount_from_notional_and_values_the_larger_claim() -> None:
    order = parse_order({"symbol": "BTC/USDT", "side": "buy", "notional_usd": 100, "price": 50_000})
    assert not isinstance(order, Malformed)
    assert (order.amount, order.notional_usd) == (0.002, 100)
    assert order_notional({"symbol": "BTC/USDT", "side": "buy", "amount": 2, "price": 10}) == (
        Valued(20)
    )
    assert isinstance(order_notional({"symbol": "BTC/USDT", "side": "buy", "amount": 2}), Unvalued)
