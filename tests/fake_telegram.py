"""A fake Telegram Bot API: ``sendMessage`` over real HTTP, every accepted message delivered once
per request (Telegram has no idempotency key), in arrival order."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.fake_api import reply


class TelegramBot:
    """The Bot API's sendMessage: every accepted message is delivered, no idempotency."""

    def __init__(self, *, delay: float = 0.02) -> None:
        self.messages: list[str] = []
        self.delay = delay

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = (await receive())["body"]
        await asyncio.sleep(self.delay)
        self.messages.append(orjson.loads(body)["text"])
        await reply(
            send, 200, orjson.dumps({"ok": True, "result": {"message_id": len(self.messages)}})
        )
