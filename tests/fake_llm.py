"""An OpenAI-compatible chat-completions fake: the shape of an answer, and a model that answers
each runner prompt with the actions a test chooses (served by a real HTTP server in tests)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

EVENT_ID = re.compile(r'"eventId": "([^"]+)"')


def chat_completion(arguments: dict[str, Any], *, model: str = "fake-1") -> dict[str, Any]:
    """A ``chat.completion`` whose one tool call returns ``arguments`` as the structured output."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "final_result",
                                "arguments": orjson.dumps(arguments).decode(),
                            },
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }


class FakeModel:
    """ASGI app for ``POST …/chat/completions``: ``answer(event_id, n)`` gives the structured
    output for the n-th request (1-based, over all events); ``None`` answers ``503``."""

    def __init__(self, answer: Callable[[str, int], dict[str, Any] | None]) -> None:
        self._answer = answer
        self.requests = 0
        self.asked: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        prompt = " ".join(
            str(m.get("content")) for m in orjson.loads(body)["messages"] if m["role"] == "user"
        )
        found = EVENT_ID.search(prompt)
        event_id = found.group(1) if found else ""
        self.requests += 1
        self.asked.append(event_id)
        output = self._answer(event_id, self.requests)
        status, reply = (
            (503, {"error": {"message": "overloaded"}})
            if output is None
            else (200, chat_completion(output))
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(reply)})
