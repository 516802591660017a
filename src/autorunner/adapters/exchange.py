"""The ``exchange`` adapter: orders through ccxt, paper by default.

``params``: ``symbol`` (``"BTC/USDT"``), ``side`` (``buy``/``sell``), ``type`` (``market``/
``limit``), ``amount`` (base units) or ``notional_usd`` with ``price`` (or ``reference_price``),
and ``mode`` (``paper`` unless ``live``). Two gates stand before a live order: the route must
allow it (``constraints.live_trading = true``, checked by the verdict) and the operator must have
enabled it (``EXCHANGE_LIVE=true`` with credentials). A paper order is recorded with a simulated
fill at the given price; nothing leaves the process.

``clientOrderId`` is derived from the effect key, so a retry after a crash cannot place a second
order on exchanges that enforce unique client ids. The adapter's own notional cap
(``EXCHANGE_MAX_NOTIONAL_USD``) is checked before sending, whatever the policy said. ccxt (an
optional extra: ``pip install autorunner[exchange]``) is imported only for live orders, and
signed calls on one key are serialized (parallel ones fail with "invalid nonce").
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import math
from typing import Any

from autorunner.adapters.base import Delivery
from autorunner.decision import Action
from autorunner.errors import PermanentError, TransientError
from autorunner.events import Event


def client_order_id(effect_key: str) -> str:
    """A stable id within common exchange limits (≤ 32 chars, letters, digits and dashes)."""
    return "ar-" + hashlib.sha256(effect_key.encode()).hexdigest()[:29]


class ExchangeAdapter:
    """Places (or in paper mode, records) one order per effect."""

    kind = "exchange"
    delivery: Delivery = "at_least_once"

    def __init__(
        self,
        *,
        exchange_id: str = "binance",
        live_enabled: bool = False,
        api_key: str | None = None,
        secret: str | None = None,
        max_notional_usd: float = 1000.0,
    ) -> None:
        self._exchange_id = exchange_id
        self._live = live_enabled
        self._api_key = api_key
        self._secret = secret
        self._cap = max_notional_usd
        self._client: Any = None
        self._signed = asyncio.Lock()

    async def execute(self, action: Action, *, effect_key: str, event: Event) -> dict[str, Any]:
        order = self._order(action.params)
        order["client_order_id"] = client_order_id(effect_key)
        if action.params.get("mode", "paper") != "live":
            return {
                "mode": "paper",
                **order,
                "fill": {"amount": order["amount"], "price": order["price"], "simulated": True},
            }
        if not self._live:
            raise PermanentError("live trading is not enabled by the operator (EXCHANGE_LIVE=true)")
        return {"mode": "live", **order, "exchange_order": await self._place(order)}

    def _order(self, params: dict[str, Any]) -> dict[str, Any]:
        symbol, side, kind = params.get("symbol"), params.get("side"), params.get("type", "market")
        if not isinstance(symbol, str) or "/" not in symbol:
            raise PermanentError(f"exchange order needs a symbol like 'BTC/USDT', got {symbol!r}")
        if side not in ("buy", "sell") or kind not in ("market", "limit"):
            raise PermanentError(
                f"exchange order needs side buy|sell and type market|limit, got {side!r}/{kind!r}"
            )
        price = _number(params.get("price", params.get("reference_price")))
        amount = _number(params.get("amount"))
        notional = _number(params.get("notional_usd"))
        if amount is None and notional is not None and price:
            amount = notional / price
        if amount is None or amount <= 0:
            raise PermanentError(
                "exchange order needs a positive amount, or notional_usd with a price"
            )
        value = notional if notional is not None else (amount * price if price else None)
        if value is None:
            raise PermanentError(
                "exchange order needs a price (or reference_price) to check its notional"
            )
        if value > self._cap:
            raise PermanentError(
                f"order notional {value:g} USD exceeds the adapter cap {self._cap:g} USD"
            )
        if kind == "limit" and not price:
            raise PermanentError("a limit order needs a price")
        return {
            "symbol": symbol,
            "side": side,
            "type": kind,
            "amount": amount,
            "price": price,
            "notional_usd": value,
        }

    async def _place(self, order: dict[str, Any]) -> dict[str, Any]:
        client = self._connect()
        async with self._signed:
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


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


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
