"""Adapters: the only code that acts on the outside world (``base.Adapter``).

``TABLE`` names every kind of action once: what configures its adapter and how the adapter is
built from the settings. The kinds a policy may name (``KINDS``), the adapters a process runs
(``build_adapters``) and the valuations replay judges by all come from it, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx2

from autorunner.adapters.base import Adapter
from autorunner.adapters.exchange import ExchangeAdapter
from autorunner.adapters.http import HttpAdapter
from autorunner.adapters.notify import NotifyAdapter
from autorunner.adapters.relay import RelayAdapter
from autorunner.adapters.telegram import TelegramAdapter
from autorunner.config import Settings
from autorunner.errors import ConfigError
from autorunner.spacing import Spacer

Builder = Callable[[Settings, httpx2.AsyncClient, Spacer | None], Adapter | None]
"""Builds a kind's adapter from the settings, or ``None`` when it is not configured."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Kind:
    """One kind of action: its name in a policy, what configures it, how it is built."""

    name: str
    configured_by: str
    build: Builder


def _notify(settings: Settings, http: httpx2.AsyncClient, spacer: Spacer | None) -> Adapter:
    return NotifyAdapter()


def _http(settings: Settings, http: httpx2.AsyncClient, spacer: Spacer | None) -> Adapter | None:
    if not settings.endpoints:
        return None
    secret = settings.http_adapter_secret
    return HttpAdapter(
        http=http,
        endpoints=settings.endpoints,
        notional_paths=settings.notional_paths,
        timeout=settings.http_adapter_timeout,
        secret=secret.get_secret_value() if secret else None,
    )


def _relay(settings: Settings, http: httpx2.AsyncClient, spacer: Spacer | None) -> Adapter | None:
    if not settings.relays:
        return None
    if settings.relay_secret is None:
        raise ConfigError(
            "RELAY_TARGETS is set but RELAY_SECRET is not: relayed events must be signed"
        )
    return RelayAdapter(
        http=http,
        targets=settings.relays,
        secret=settings.relay_secret.get_secret_value(),
        timeout=settings.http_adapter_timeout,
    )


def _exchange(
    settings: Settings, http: httpx2.AsyncClient, spacer: Spacer | None
) -> Adapter | None:
    if not settings.exchange_enabled:
        return None
    key, secret = settings.exchange_api_key, settings.exchange_secret
    if settings.exchange_live and (key is None or secret is None):
        raise ConfigError("EXCHANGE_LIVE=true needs EXCHANGE_API_KEY and EXCHANGE_SECRET")
    return ExchangeAdapter(
        exchange_id=settings.exchange_id,
        live_enabled=settings.exchange_live,
        api_key=key.get_secret_value() if key else None,
        secret=secret.get_secret_value() if secret else None,
        max_notional_usd=settings.exchange_max_notional_usd,
    )


def _telegram(
    settings: Settings, http: httpx2.AsyncClient, spacer: Spacer | None
) -> Adapter | None:
    if settings.telegram_bot_token is None or not settings.chats:
        return None
    return TelegramAdapter(
        http=http,
        token=settings.telegram_bot_token.get_secret_value(),
        chats=settings.chats,
        api_base=settings.telegram_api_url,
        parse_mode=settings.telegram_parse_mode,
        delivery=settings.telegram_delivery,
        chat_interval=settings.telegram_chat_interval,
        spacer=spacer,
    )


TABLE: tuple[Kind, ...] = (
    Kind(name="exchange", configured_by="set EXCHANGE_ENABLED=true", build=_exchange),
    Kind(name="http", configured_by="set HTTP_ENDPOINTS", build=_http),
    Kind(name="notify", configured_by="always there", build=_notify),
    Kind(name="relay", configured_by="set RELAY_TARGETS and RELAY_SECRET", build=_relay),
    Kind(
        name="telegram", configured_by="set TELEGRAM_BOT_TOKEN and TELEGRAM_CHATS", build=_telegram
    ),
)
KINDS = tuple(kind.name for kind in TABLE)
"""Every kind of action an adapter exists for; a policy may name no other."""
CONFIGURED_BY = {kind.name: kind.configured_by for kind in TABLE}


def build_adapters(
    settings: Settings, http: httpx2.AsyncClient, *, spacer: Spacer | None = None
) -> dict[str, Adapter]:
    """The adapter of every kind the settings configure (``notify`` always)."""
    built = {kind.name: kind.build(settings, http, spacer) for kind in TABLE}
    return {name: adapter for name, adapter in built.items() if adapter is not None}
