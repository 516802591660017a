"""Shared test helpers: a fake clock, sample events and signed requests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from autorunner.events import Event
from autorunner.notional import (
    Valuer,
    http_valuer,
    moves_no_money,
    no_money_with,
    order_notional,
)
from autorunner.records import RawDelivery

VALUERS: dict[str, Valuer] = {
    "notify": moves_no_money,
    "telegram": no_money_with("telegram", frozenset({"chat", "text"})),
    "relay": no_money_with("relay", frozenset({"target"})),
    "exchange": order_notional,
    "http": http_valuer({"orders": "notional_usd", "tickets": None}),
}
"""Every adapter kind's valuation, as the composition root builds them (``http``: endpoint
``orders`` carries ``body.notional_usd``; ``tickets`` moves no money)."""


def readme_policy() -> str:
    """The TOML example of the README's Policy section, as a new user would copy it."""
    readme = Path(__file__).parents[1] / "README.md"
    section = readme.read_text().split("## Policy", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's Policy section has no TOML example"
    return block.group(1)


def kinds(*names: str) -> dict[str, Valuer]:
    """The valuers of a configuration with adapters for ``names`` only."""
    return {name: VALUERS[name] for name in names}


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_event(event_id: str = "evt-1", *, execution_id: str | None = None, **extra: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "channel": "webhook",
        "shape": "canonical",
        "event_type": "query.triggered",
        "execution_id": execution_id,
        "query_id": "q-1",
        "title": "BTC above 100k",
        "body": "BTC crossed 100000",
    }
    fields.update(extra)
    return Event(**fields)


def raw_delivery(body: str = "{}") -> RawDelivery:
    return RawDelivery(received_at=0.0, headers={"content-type": "application/json"}, body=body)


def elfa_signature(secret: str, ts: str, event_id: str, body: bytes) -> str:
    """The contract's formula, written out independently of autorunner.signatures."""
    mac = hmac.new(secret.encode(), f"{ts}.{event_id}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass
class SignedDelivery:
    """A signed webhook request ready to send."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def signed(
    payload: dict[str, Any],
    *,
    secret: str = "whk-secret",
    event_id: str | None = None,
    ts: int | None = None,
) -> SignedDelivery:
    body = orjson.dumps(payload)
    eid = event_id if event_id is not None else str(payload.get("eventId", ""))
    stamp = str(ts if ts is not None else int(time.time()))
    return SignedDelivery(
        body=body,
        headers={
            "content-type": "application/json",
            "x-auto-event-id": eid,
            "x-auto-signature-timestamp": stamp,
            "x-auto-signature": elfa_signature(secret, stamp, eid, body),
        },
    )


def canonical(event_id: str, *, execution_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "1.0",
        "eventType": "query.triggered",
        "eventId": event_id,
        "timestamp": "2026-04-01T12:00:00.000Z",
        "queryId": "q_123",
        "channel": "webhook",
        "trigger": {"symbol": "BTC", "reason": "price > threshold"},
        "evaluation": {"triggered": True},
        "action": {"type": "webhook"},
    }
    if execution_id is not None:
        body["executionId"] = execution_id
    return body


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.01
) -> None:
    """Poll a condition owned by another task or process until it holds, or fail after ``within``."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the state lives in a store, not in an Event
            await asyncio.sleep(interval)
