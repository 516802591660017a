"""The ``telegram`` adapter: Bot API ``sendMessage`` to a named chat.

Decisions name a chat (``params.chat``) that the operator mapped to an id
(``TELEGRAM_CHATS="desk=-1001234"``). Text is escaped for the chosen parse mode and cut to
Telegram's 4,096 characters. Sends are spaced to one a second per chat and thirty a second per
bot, Telegram's limits, which hold per bot token: across all workers in cloud mode (a
``Spacer`` on Redis), within the process in local mode; ``429`` honours
``parameters.retry_after``. The bot
token is part of the URL, so no error message ever includes the URL.

Telegram has no idempotency key: ``at_most_once`` (default) means a send cut off by a crash is
marked unknown and not repeated; ``at_least_once`` repeats it (possibly a second message).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Literal

import httpx2

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.decision import Action
from autorunner.errors import DeliveryUnknown, PermanentError, TransientError
from autorunner.events import Event
from autorunner.notional import no_money_with
from autorunner.spacing import LocalSpacer, Spacer

MAX_TEXT = 4096
BOT_INTERVAL = 1 / 30
"""Telegram allows a bot about thirty messages a second overall."""
ParseMode = Literal["plain", "HTML", "MarkdownV2"]
_MARKDOWN_V2 = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")


def escape(text: str, mode: ParseMode) -> str:
    """Make ``text`` literal under ``mode``."""
    if mode == "HTML":
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if mode == "MarkdownV2":
        return _MARKDOWN_V2.sub(r"\\\1", text)
    return text


def fit(text: str) -> str:
    """Cut to Telegram's limit, marking the cut."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class TelegramAdapter:
    """Sends ``params.text`` to ``chats[params.chat]``."""

    kind = "telegram"
    waits_to_send = True
    notional = staticmethod(no_money_with("telegram", frozenset({"chat", "text"})))

    def __init__(
        self,
        *,
        http: httpx2.AsyncClient,
        token: str,
        chats: Mapping[str, str],
        api_base: str = "https://api.telegram.org",
        parse_mode: ParseMode = "plain",
        delivery: DeliveryMode = "at_most_once",
        chat_interval: float = 1.0,
        spacer: Spacer | None = None,
    ) -> None:
        self._http = http
        self._token = token
        self._chats = dict(chats)
        self._api = api_base.rstrip("/")
        self._mode = parse_mode
        self.delivery: DeliveryMode = delivery
        self._chat_interval = chat_interval
        self._spacer = spacer or LocalSpacer()
        self._bot_key = f"bot:{hashlib.sha256(token.encode()).hexdigest()[:12]}"  # not the token

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        name = str(action.params.get("chat"))
        chat_id = self._chats.get(name)
        if chat_id is None:
            raise PermanentError(f"telegram chat {name!r} is not configured (TELEGRAM_CHATS)")
        payload: dict[str, Any] = {
            "chat_id": chat_id,
            "text": fit(escape(str(action.params.get("text", "")), self._mode)),
        }
        if self._mode != "plain":
            payload["parse_mode"] = self._mode
        await self._spacer.wait(self._bot_key, BOT_INTERVAL)
        await self._spacer.wait(f"{self._bot_key}:chat:{chat_id}", self._chat_interval)
        await sending()  # the slot is ours: from here the message may reach Telegram
        try:
            response = await self._http.post(
                f"{self._api}/bot{self._token}/sendMessage", json=payload
            )
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            raise TransientError(f"telegram unreachable ({type(exc).__name__})") from exc
        except httpx2.TransportError as exc:  # sent, but no answer: it may have been delivered
            raise DeliveryUnknown(f"telegram did not answer ({type(exc).__name__})") from exc
        try:
            data = response.json()
        except ValueError:
            data = {}
        if response.status_code == 429 or response.status_code >= 500:
            retry_after = (data.get("parameters") or {}).get("retry_after")
            raise TransientError(
                f"telegram answered {response.status_code}: {data.get('description', '')}",
                retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            )
        if not data.get("ok"):
            raise PermanentError(
                f"telegram refused the message ({response.status_code}): {data.get('description', '')}"
            )
        result = data.get("result") or {}
        return {"chat": name, "message_id": result.get("message_id")}
