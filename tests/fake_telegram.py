"""A fake Telegram Bot API: ``sendMessage`` over real HTTP, every accepted message delivered once
per request (Telegram has no idempotency key), in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
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


class ApproversBot:
    """The Bot API as the approvals desk uses it, over real HTTP: ``sendMessage`` (with an
    inline keyboard), ``getUpdates`` long polling from an offset, ``answerCallbackQuery`` and
    ``editMessageText``. ``press`` makes a person press a button: a real ``callback_query``
    update, delivered to the next ``getUpdates`` (or posted to a webhook by the test)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.polls = 0
        self.closed = False
        self.missing_chats: set[int] = set()
        """Chats the bot is not in: ``sendMessage`` there answers 400 "chat not found"."""
        self._new = asyncio.Event()

    def close(self) -> None:
        """Answer the open long polls now (a server shutting down waits for them)."""
        self.closed = True
        self._new.set()

    def press(
        self, message: dict[str, Any], *, approve: bool, user_id: int, chat_id: int | None = None
    ) -> dict[str, Any]:
        """The update a press of Approve (or Reject) on ``message`` makes, queued for polling."""
        button = message["reply_markup"]["inline_keyboard"][0][0 if approve else 1]
        update = {
            "update_id": 1000 + len(self.updates),
            "callback_query": {
                "id": f"cq-{len(self.updates)}",
                "from": {
                    "id": user_id,
                    "is_bot": False,
                    "first_name": "P",
                    "username": f"user{user_id}",
                },
                "message": {
                    "message_id": message["message_id"],
                    "chat": {
                        "id": message["chat_id"] if chat_id is None else chat_id,
                        "type": "group",
                    },
                    "date": 0,
                },
                "chat_instance": "1",
                "data": button["callback_data"],
            },
        }
        self.updates.append(update)
        self._new.set()
        return update

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        payload = orjson.loads(body) if body else {}
        method = scope["path"].rsplit("/", 1)[-1]
        result: Any = True
        if method == "sendMessage" and payload.get("chat_id") in self.missing_chats:
            refusal = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            await reply(send, 400, orjson.dumps(refusal))
            return
        if method == "sendMessage":
            sent = {**payload, "message_id": len(self.sent) + 1}
            self.sent.append(sent)
            result = {"message_id": sent["message_id"], "chat": {"id": payload["chat_id"]}}
        elif method == "getUpdates":
            self.polls += 1
            offset = int(payload.get("offset", 0))
            wait = float(payload.get("timeout", 0))
            deadline = asyncio.get_running_loop().time() + wait
            while not (found := [u for u in self.updates if u["update_id"] >= offset]):
                if self.closed:
                    break
                self._new.clear()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new.wait(), left)
            result = found
        elif method == "answerCallbackQuery":
            self.answers.append(payload)
        elif method == "editMessageText":
            self.edits.append(payload)
        else:
            await reply(send, 404, orjson.dumps({"ok": False, "description": "Not Found"}))
            return
        await reply(send, 200, orjson.dumps({"ok": True, "result": result}))
