"""How much money an action moves: the one contract ``max_notional_usd`` is enforced by (pure).

Each kind of action carries its amount in one place, and only there:

* ``exchange``: ``amount`` (base units) times ``price`` (or ``reference_price``) on a pair quoted in
  USD or a USD stablecoin (``BTC/USDT``); or ``notional_usd`` with a price, from which the amount
  is derived. When an order states both, the larger value counts. A market order without a price
  has no known value. Parameters outside ``ORDER_PARAMS`` make the order malformed: nothing the
  adapter would not read can carry an amount past the cap.
* ``http``: the number at the endpoint's amount path inside ``params.body`` — ``notional_usd``
  unless the operator names another path for that endpoint (``HTTP_NOTIONAL=orders=order.usd``),
  or ``-`` for an endpoint that moves no money. ``endpoint`` and ``body`` are the only params.
* ``notify``, ``telegram``, ``relay``: move no money (telegram and relay accept only the params
  they read).

A valuation is a value, never an exception: ``Valued`` (the USD amount), ``Unvalued`` (money
moves but its amount cannot be told — denied on a route with a cap: fail closed), ``Malformed``
(denied on every route, the adapter could not perform it) or ``None`` (no money moves).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

USD_QUOTES = frozenset({"USD", "USDT", "USDC", "USDE", "FDUSD", "DAI", "TUSD", "BUSD", "PYUSD"})
"""Quote currencies counted as US dollars when an order's notional is computed."""
ORDER_PARAMS = frozenset(
    {"symbol", "side", "type", "amount", "price", "reference_price", "notional_usd", "mode"}
)
HTTP_PARAMS = frozenset({"endpoint", "body"})
DEFAULT_HTTP_PATH = "notional_usd"


@dataclass(frozen=True, slots=True)
class Valued:
    """The action moves ``usd`` dollars."""

    usd: float


@dataclass(frozen=True, slots=True)
class Unvalued:
    """The action moves money, but how much cannot be determined."""

    reason: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """The action cannot be performed as written."""

    reason: str


Notional = Valued | Unvalued | Malformed | None
Valuer = Callable[[Mapping[str, Any]], Notional]
"""An adapter kind's valuation of an action's ``params``."""


def moves_no_money(params: Mapping[str, Any]) -> Notional:
    """The valuer of kinds that move no money and read any params (notify)."""
    return None


def no_money_with(kind: str, names: frozenset[str]) -> Valuer:
    """The valuer of a kind that moves no money and reads only ``names`` (telegram, relay):
    any other param is a mistake the adapter would silently ignore."""

    def value(params: Mapping[str, Any]) -> Notional:
        unknown = sorted(set(params) - names)
        if unknown:
            return Malformed(
                f"{kind} action has unknown param(s) {', '.join(map(repr, unknown))}"
                f" (it reads {', '.join(sorted(names))})"
            )
        return None

    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Order:
    """An exchange order as the adapter would place it; ``notional_usd`` is None when unknown."""

    symbol: str
    side: str
    type: str
    amount: float
    price: float | None
    notional_usd: float | None
    mode: str
    unvalued: str | None = None


def parse_order(params: Mapping[str, Any]) -> Order | Malformed:
    """The order ``params`` describe, or why they describe none (see the module docstring)."""
    problem = _order_problem(params)
    if problem is not None:
        return Malformed(problem)
    symbol = str(params["symbol"])
    price = _positive(params.get("price", params.get("reference_price")))
    amount, declared = _positive(params.get("amount")), _positive(params.get("notional_usd"))
    in_usd = symbol.split("/", 1)[1].split(":", 1)[0].upper() in USD_QUOTES
    if amount is None:
        if declared is None:
            return Malformed("exchange order needs an amount, or notional_usd with a price")
        if price is None or not in_usd:
            return Malformed(
                f"exchange order gives notional_usd without a USD price to size it ({symbol})"
            )
        amount = declared / price
    computed = amount * price if price is not None and in_usd else None
    candidates = [v for v in (computed, declared) if v is not None]
    unvalued = None
    if not candidates:
        unvalued = (
            f"{symbol} is not quoted in USD" if not in_usd else "a market order without a price"
        )
    return Order(
        symbol=symbol,
        side=str(params["side"]),
        type=str(params.get("type", "market")),
        amount=amount,
        price=price,
        notional_usd=max(candidates) if candidates else None,
        mode=str(params.get("mode", "paper")),
        unvalued=unvalued,
    )


def _order_problem(params: Mapping[str, Any]) -> str | None:  # noqa: PLR0911 - one return per refusal
    """Why ``params`` are not an order the adapter can place, or ``None``."""
    unknown = sorted(set(params) - ORDER_PARAMS)
    symbol, side = params.get("symbol"), params.get("side")
    kind, mode = params.get("type", "market"), params.get("mode", "paper")
    bad_numbers = [
        f"{name} {params[name]!r}"
        for name in ("amount", "price", "reference_price", "notional_usd")
        if name in params and _positive(params[name]) is None
    ]
    if unknown:
        return (
            f"exchange order has unknown param(s) {', '.join(map(repr, unknown))}:"
            " give amount and price (or notional_usd and price)"
        )
    if not isinstance(symbol, str) or "/" not in symbol:
        return f"exchange order needs a symbol like 'BTC/USDT', got {symbol!r}"
    if side not in ("buy", "sell") or kind not in ("market", "limit"):
        return f"exchange order needs side buy|sell and type market|limit, got {side!r}/{kind!r}"
    if mode not in ("paper", "live"):
        return f"exchange order mode must be paper or live, got {mode!r}"
    if bad_numbers:
        return f"exchange order {bad_numbers[0]} is not a positive number"
    if kind == "limit" and "price" not in params:
        return "a limit order needs a price"
    return None


def order_notional(params: Mapping[str, Any]) -> Notional:
    """The ``exchange`` valuer."""
    order = parse_order(params)
    if isinstance(order, Malformed):
        return order
    if order.notional_usd is None:
        return Unvalued(order.unvalued or "unknown")
    return Valued(order.notional_usd)


def http_valuer(paths: Mapping[str, str | None]) -> Valuer:
    """The ``http`` valuer over the configured endpoints: ``paths`` maps each endpoint name to
    the dotted path of its amount inside the body, ``None`` for an endpoint moving no money."""

    def value(params: Mapping[str, Any]) -> Notional:
        unknown = sorted(set(params) - HTTP_PARAMS)
        name = params.get("endpoint")
        if unknown:
            return Malformed(
                f"http action has unknown param(s) {', '.join(map(repr, unknown))}: only endpoint"
                " and body are sent (an amount goes inside body)"
            )
        if not isinstance(name, str) or name not in paths:
            return Malformed(f"http endpoint {name!r} is not configured (HTTP_ENDPOINTS)")
        path = paths[name]
        if path is None:
            return None
        found: Any = params.get("body", {})
        for part in path.split("."):
            if not isinstance(found, Mapping) or part not in found:
                return Unvalued(
                    f"endpoint {name!r} carries its amount at body.{path}, which is missing"
                )
            found = found[part]
        number = _number(found)
        if number is None or number < 0:
            return Malformed(
                f"body.{path} of endpoint {name!r} is {found!r}, not a non-negative number"
            )
        return Valued(number)

    return value


def over_cap(notional: Notional, cap: float | None) -> str | None:
    """Why an action with this valuation must be denied under ``cap`` (``None``: no cap)."""
    if isinstance(notional, Malformed):
        return notional.reason
    if cap is None:
        return None
    if isinstance(notional, Unvalued):
        return f"notional cannot be determined ({notional.reason}) and the route caps it at {cap:g} USD"
    if isinstance(notional, Valued) and notional.usd > cap:
        return f"notional {notional.usd:g} USD exceeds the route's cap of {cap:g} USD"
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _positive(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None
