"""A rolling restart in the middle of an alert burst: 40 Telegram messages to one chat, spaced by
the per-chat limit, and the runner stopped (SIGTERM) or killed (SIGKILL) after ten. Messages that
were still waiting for their send slot never left the process: they are sent after the restart,
not written off as ``unknown``. Only a request that may have reached Telegram can be unknown, and
the operator settles it with ``effects resolve``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

import httpx2
import pytest

from autorunner.sim.sender import sample_event, send_event
from tests.acceptance.runner import SECRET, Server, base_env, cli, start_server
from tests.fake_http import serving
from tests.fake_telegram import TelegramBot
from tests.helpers import eventually

BURST = 40
POLICY = """
[default]
allowed_actions = ["telegram"]
[[default.rules]]
actions = [{ step = "tell", kind = "telegram", params = { chat = "desk", text = "E ${event_id}" } }]
"""


def ledger(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT effect_key, status FROM effects").fetchall())


def finished(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE status IN ('done', 'dead')")
        return int(row.fetchone()[0])


async def burst_then(tmp_path: Path, stop: str) -> tuple[TelegramBot, dict[str, str], Path]:
    """Send the burst, ``stop`` the runner after ten messages, restart it; the bot, env, db."""
    bot = TelegramBot(delay=0.005)
    db = tmp_path / "runner.db"
    (tmp_path / "policy.toml").write_text(POLICY)
    async with serving(bot) as bot_base:
        env = base_env(
            db,
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            TELEGRAM_BOT_TOKEN="t0k",
            TELEGRAM_CHATS="desk=1",
            TELEGRAM_API_URL=bot_base,
            TELEGRAM_CHAT_INTERVAL="0.1",
            SHUTDOWN_GRACE="0.3",
            WORKER_CONCURRENCY="64",
        )
        first = start_server(env, tmp_path, tmp_path / "first.log")
        async with httpx2.AsyncClient(timeout=5) as client:
            for n in range(BURST):
                event_id = f"alert-{n:02d}"
                reply = await send_event(
                    client, first.url, SECRET, sample_event(event_id=event_id), event_id=event_id
                )
                assert reply.status == 202
        await eventually(lambda: _delivered(bot, 10), within=30)
        if stop == "sigterm":
            assert await asyncio.to_thread(first.terminate) == 0
        else:
            await asyncio.to_thread(first.kill)
        assert len(bot.messages) < BURST, "the stop must land in the middle of the burst"

        second = start_server(env, tmp_path, tmp_path / "second.log")
        try:
            await eventually(lambda: _finished(db), within=60)
            unknown = [k for k, v in ledger(db).items() if v == "unknown"]
            for key in unknown:  # the operator checks the chat and settles each one
                event_id = key.split(":")[0]
                choice = "--sent" if f"E {event_id}" in bot.messages else "--resend"
                settled = cli(env, "effects", "resolve", key, choice, cwd=tmp_path)
                assert settled.returncode == 0, settled.stderr
            await eventually(lambda: _all_done(db), within=30)
        finally:
            assert _stopped(second) == 0
    return bot, env, db


async def _delivered(bot: TelegramBot, n: int) -> bool:
    return len(bot.messages) >= n


async def _finished(db: Path) -> bool:
    return finished(db) == BURST


async def _all_done(db: Path) -> bool:
    return finished(db) == BURST and set(ledger(db).values()) == {"done"}


def _stopped(server: Server) -> int:
    return server.terminate()


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_stop_mid_burst_sends_every_waiting_alert_exactly_once_after_the_restart(
    tmp_path: Path, stop: str
) -> None:
    bot, env, db = await burst_then(tmp_path, stop)
    per_event = Counter(text.removeprefix("E ") for text in bot.messages)
    assert sorted(per_event) == [f"alert-{n:02d}" for n in range(BURST)]
    assert set(per_event.values()) == {1}
    assert set(ledger(db).values()) == {"done"}
    unknown = cli(env, "effects", "list", "--status", "unknown", "--json", cwd=tmp_path)
    assert json.loads(unknown.stdout) == []
    with sqlite3.connect(db) as conn:
        resolved = conn.execute("SELECT count(*) FROM operations").fetchone()[0]
    if stop == "sigterm":  # a graceful stop cancels only sends that never left
        assert resolved == 0
    else:  # a kill can cut off the one request in flight; the operator settled it
        assert resolved <= 1
