"""Effects happen once in effect: an internal API and Telegram, faked by real HTTP servers here,
under transient failures, duplicate deliveries and a SIGKILL of the runner in the middle of
effects, then a restart — with the rules decider, and with the llm decider asking an
OpenAI-compatible model (a real HTTP server too) that fails now and then and never gives the same
step ids twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest

from autorunner.sim.sender import sample_event, send_event
from tests.acceptance.runner import SECRET, base_env, start_server
from tests.fake_api import IdempotentApi
from tests.fake_http import serving
from tests.fake_llm import FakeModel
from tests.fake_telegram import TelegramBot
from tests.helpers import eventually

EVENTS = 120
RULES_POLICY = """
[default]
allowed_actions = ["telegram", "http"]
[[default.rules]]
actions = [
  { step = "tell", kind = "telegram", params = { chat = "desk", text = "E ${event_id}" } },
  { step = "order", kind = "http", params = { endpoint = "orders", body = { event = "${event_id}" } } },
]
"""
LLM_POLICY = """
[default]
decider = "llm"
context = []
allowed_actions = ["telegram", "http"]
"""


def fickle_answer(event_id: str, n: int) -> dict[str, Any] | None:
    """Every seventh request fails; step ids carry the request number, so a model asked again
    after a crash would name new effects — the runner must act on the first decision."""
    if n % 7 == 0:
        return None
    return {
        "actions": [
            {
                "step_id": f"tell-{n}",
                "kind": "telegram",
                "params": {"chat": "desk", "text": f"E {event_id}"},
            },
            {
                "step_id": f"order-{n}",
                "kind": "http",
                "params": {"endpoint": "orders", "body": {"event": event_id}},
            },
        ],
        "rationale": "trigger seen",
    }


def ledger(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT effect_key, status FROM effects").fetchall())


def finished(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT count(*) FROM events WHERE status IN ('done', 'dead')").fetchone()[
                0
            ]
        )


@pytest.mark.parametrize("decider", ["rules", "llm"])
async def test_each_effect_reaches_the_api_and_telegram_at_most_once_across_a_sigkill(
    tmp_path: Path, decider: str
) -> None:
    api, bot, model = (
        IdempotentApi(fail_every=3, delay=0.02),
        TelegramBot(),
        FakeModel(fickle_answer),
    )
    (tmp_path / "policy.toml").write_text(RULES_POLICY if decider == "rules" else LLM_POLICY)
    db = tmp_path / "runner.db"
    async with (
        serving(api) as api_base,
        serving(bot) as bot_base,
        serving(model) as model_base,
    ):
        env = base_env(
            db,
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            HTTP_ENDPOINTS=f"orders={api_base}/orders",
            TELEGRAM_BOT_TOKEN="t0k",
            TELEGRAM_CHATS="desk=1",
            TELEGRAM_API_URL=bot_base,
            TELEGRAM_CHAT_INTERVAL="0",
            RETRY_BASE_DELAY="0.05",
            RETRY_MAX_DELAY="0.2",
            MAX_ATTEMPTS="10",
            LLM_MODEL="fake-1",
            LLM_BASE_URL=f"{model_base}/v1",
            LLM_API_KEY="sk-local",
        )
        first = start_server(env, tmp_path, tmp_path / "first.log")
        async with httpx2.AsyncClient(timeout=5) as client:
            for n in range(EVENTS):
                event_id = f"fx-{n:03d}"
                for _ in range(2 if n % 5 == 0 else 1):  # every fifth delivered twice
                    reply = await send_event(
                        client,
                        first.url,
                        SECRET,
                        sample_event(event_id=event_id),
                        event_id=event_id,
                    )
                    assert reply.status in (200, 202)

        async def mid_effect() -> bool:
            statuses = list(ledger(db).values())
            done = sum(status == "done" for status in statuses)
            return done >= EVENTS // 2 and "pending" in statuses

        await eventually(mid_effect, within=60, interval=0.005)
        await asyncio.to_thread(first.kill)
        # The kill landed mid-effect: requests had left and their outcome was never recorded.
        cut_off = [key for key, status in ledger(db).items() if status == "pending"]
        assert cut_off, "the kill must land while an effect's request is in flight"

        second = start_server(env, tmp_path, tmp_path / "second.log")
        try:

            async def all_finished() -> bool:
                return finished(db) == EVENTS

            await eventually(all_finished, within=120)
        finally:
            assert second.terminate() == 0

    effects = ledger(db)
    orders = steps_of(effects, "order")
    tells = steps_of(effects, "tell")
    events = [f"fx-{n:03d}" for n in range(EVENTS)]
    # One order and one message intended per event, whatever was retried, resent or re-asked.
    assert sorted(orders) == sorted(tells) == events
    assert all(len(orders[e]) == len(tells[e]) == 1 for e in events)
    # The internal API performed every order exactly once.
    assert max(api.performed.values()) == 1
    assert sorted(api.performed) == sorted(key for keys in orders.values() for key in keys)
    assert all(effects[key] == "done" for keys in orders.values() for key in keys)
    # Telegram: at most one message per effect key; one for each send recorded as done.
    per_event = Counter(text.removeprefix("E ") for text in bot.messages)
    assert max(per_event.values()) == 1
    for event_id in events:
        [key] = tells[event_id]
        assert effects[key] in {"done", "unknown"}
        if effects[key] == "done":
            assert per_event[event_id] == 1
    # Each effect the kill cut off was settled by the next process: orders performed (the
    # internal API's idempotency made a resend harmless), messages sent or left unknown.
    for key in cut_off:
        assert effects[key] in ({"done"} if ":order" in key else {"done", "unknown"})
    if decider == "llm":
        assert model.requests >= EVENTS  # the model decided, over real HTTP


def steps_of(effects: dict[str, str], step: str) -> dict[str, list[str]]:
    """Effect keys by event for one kind of step (``tell`` or ``order``, numbered or not)."""
    found: dict[str, list[str]] = {}
    for key in effects:
        event_id, step_id = key.split(":", 1)
        if step_id.split("-")[0] == step:
            found.setdefault(event_id, []).append(key)
    return found
