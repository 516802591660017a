"""One table of adapter kinds: what a policy may name, what a process runs and what replay
values all come from it."""

from __future__ import annotations

import base64

import httpx2

from autorunner.adapters import CONFIGURED_BY, KINDS, build_adapters
from autorunner.adapters.base import valuers
from autorunner.config import Settings

EVERYTHING = Settings(
    http_endpoints="orders=http://127.0.0.1:9/orders",
    relay_targets="desk=http://127.0.0.1:9/relay",
    relay_secret="whsec_" + base64.b64encode(b"relay-secret-of-24-bytes").decode(),
    exchange_enabled=True,
    telegram_bot_token="123:abc",
    telegram_chats="desk=1",
)


async def test_every_kind_has_one_adapter_one_valuation_and_says_what_configures_it() -> None:
    async with httpx2.AsyncClient() as http:
        adapters = build_adapters(EVERYTHING, http)
    assert tuple(sorted(adapters)) == tuple(sorted(KINDS))
    assert {name: adapter.kind for name, adapter in adapters.items()} == {k: k for k in KINDS}
    assert set(valuers(adapters)) == set(KINDS) == set(CONFIGURED_BY)


async def test_only_notify_runs_when_nothing_else_is_configured() -> None:
    async with httpx2.AsyncClient() as http:
        assert list(build_adapters(Settings(), http)) == ["notify"]
