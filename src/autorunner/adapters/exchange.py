"""The ``exchange`` adapter: orders through ccxt, paper by default.

``params``: ``symbol`` (``"BTC/USDT"``), ``side`` (``buy``/``sell``), ``type`` (``market``/
``limit``), ``amount`` (base units) or ``notional_usd`` with ``price`` (or ``reference_price``),
and ``mode`` (``paper`` unless ``live``) — nothing else (``notional.parse_order``, which the
policy's cap reads too). Two gates stand before a live order: the route must
allow it (``constraints.live_trading = true``, checked by the verdict) and the operator must have
enabled it (``EXCHANGE_LIVE=true`` with credentials). A paper order is recorded with a simulated
fill at the given price; nothing leaves the process.

``clientOrderId`` is derived from the effect key, so a retry after a crash cannot place a second
order on exchanges that enforce unique client ids.

The policy valued the order on the price the decision gave; a market order fills at the market,
a sell limit below the bid at the bid, a contract at its contract size. So before a live order
leaves, it is valued again on the exchange's own quote (``fetch_ticker``) and market
(``contractSize``): worst case the ask for a market buy, the limit for a limit buy, the higher
of limit and bid for a sell. An order worth more there than ``PRICE_TOLERANCE`` above the
notional the cap was judged on is refused, and so is one the market cannot value. The adapter's own notional cap
(``EXCHANGE_MAX_NOTIONAL_USD``) is checked before sending, whatever the policy said. ccxt (an
optional extra: ``pip install autorunner[exchange]``) is imported only for live orders, and
signed calls on one key are serialized (parallel ones fail with "invalid nonce").
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import Mapping
from typing import Any

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.decision import Action
from autorunner.errors import PermanentError, TransientError
from autorunner.events import Event
from autorunner.notional import Malformed, Notional, order_notional, parse_order

PRICE_TOLERANCE = 0.02
"""How far above its stated notional a live order may be worth at the market (slippage)."""


def client_order_id(effect_key: str) -> str:
    """A stable id within common exchange limits (≤ 32 chars, letters, digits and dashes)."""
    return "ar-" + hashlib.sha256(effect_key.encode()).hexdigest()[:29]


class ExchangeAdapter:
    """Places (or in paper mode, records) one order per effect."""

    kind = "exchange"
    waits_to_send = False
    delivery: DeliveryMode = "at_least_once"

    def __init__(
        self,
        *,
        exchange_id: str = "binance",
        live_enabled: bool = False,
        api_key: str | None = None,
        secret: str | None = None,
        max_notional_usd: float = 1000.0,
        client: Any = None,
    ) -> None:
        self._exchange_id = exchange_id
        self._live = live_enabled
        self._api_key = api_key
        self._secret = secret
        self._cap = max_notional_usd
        self._client: Any = client  # a ccxt async exchange; made from ccxt on first use
        self._signed = asyncio.Lock()

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        order = self._order(action.params)
        order["client_order_id"] = client_order_id(effect_key)
        if action.params.get("mode", "paper") != "live":
            await sending()  # paper: recorded here, nothing leaves the process
            return {
                "mode": "paper",
                **order,
                "fill": {"amount": order["amount"], "price": order["price"], "simulated": True},
            }
        if not self._live:
            raise PermanentError("live trading is not enabled by the operator (EXCHANGE_LIVE=true)")
        return {"mode": "live", **order, "exchange_order": await self._place(order, sending)}

    def notional(self, params: Mapping[str, Any]) -> Notional:
        return order_notional(params)

    def _order(self, params: Mapping[str, Any]) -> dict[str, Any]:
        order = parse_order(params)
        if isinstance(order, Malformed):
            raise PermanentError(order.reason)
        if order.notional_usd is None:
            raise PermanentError(
                f"exchange order has no known notional ({order.unvalued}): give a price"
                " (or reference_price) on a USD-quoted pair"
            )
        if order.notional_usd > self._cap:
            raise PermanentError(
                f"order notional {order.notional_usd:g} USD exceeds the adapter cap {self._cap:g} USD"
            )
        return {
            "symbol": order.symbol,
            "side": order.side,
            "type": order.type,
            "amount": order.amount,
            "price": order.price,
            "notional_usd": order.notional_usd,
        }

    async def _place(self, order: dict[str, Any], sending: Sending) -> dict[str, Any]:
        client = self._connect()
        async with self._signed:
            await self._check_at_market(client, order)
            await sending()
            try:
                placed = await client.create_order(
                    order["symbol"],
                    order["type"],
                    order["side"],
                    order["amount"],
                    order["price"] if order["type"] == "limit" else None,
                    {"clientOrderId": order["client_order_id"]},
                )
            except Exception as exc:
                raise _translate(exc) from exc
        return {"id": placed.get("id"), "status": placed.get("status")}

    async def _check_at_market(self, client: Any, order: dict[str, Any]) -> None:
        """Refuse a live order the market values above the notional it was capped on."""
        try:
            await client.load_markets()
            market = client.market(order["symbol"])
            ticker = await client.fetch_ticker(order["symbol"])
        except PermanentError:
            raise
        except Exception as exc:
            raise _translate(exc) from exc
        contract = _positive(market.get("contractSize")) or 1.0
        quote = _positive(ticker.get("ask" if order["side"] == "buy" else "bid")) or _positive(
            ticker.get("last")
        )
        if quote is None:
            raise PermanentError(
                f"no market price for {order['symbol']}: a live order is not sent unvalued"
            )
        limit = order["price"] if order["type"] == "limit" else None
        if order["side"] == "buy":
            price = limit if limit is not None else quote
        else:
            price = max(limit or 0.0, quote)
        at_market = order["amount"] * contract * price
        stated = order["notional_usd"]
        if at_market > stated * (1 + PRICE_TOLERANCE) or at_market > self._cap:
            raise PermanentError(
                f"order is worth {at_market:g} USD at the market ({order['symbol']} at {price:g},"
                f" contract size {contract:g}), above the {stated:g} USD it was capped on"
                f" (or the adapter cap {self._cap:g} USD): not sent"
            )

    def _connect(self) -> Any:
        if self._client is None:
            try:
                ccxt = importlib.import_module("ccxt.async_support")
            except ImportError as exc:
                raise PermanentError(
                    "live trading needs ccxt: pip install 'autorunner[exchange]'"
                ) from exc
            self._client = getattr(ccxt, self._exchange_id)(
                {"apiKey": self._api_key, "secret": self._secret}
            )
        return self._client


def _translate(exc: Exception) -> Exception:
    """ccxt's network and rate-limit errors are retryable; the rest (funds, symbol…) are not."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {
        "NetworkError",
        "RateLimitExceeded",
        "ExchangeNotAvailable",
        "RequestTimeout",
        "DDoSProtection",
    }:
        return TransientError(f"exchange unavailable: {type(exc).__name__}")
    return PermanentError(f"exchange refused the order: {type(exc).__name__}: {exc}")


def _positive(value: object) -> float | None:
    number = (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    )
    return number if number is not None and number > 0 and number != float("inf") else None
