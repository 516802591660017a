"""Alerts reach a person with nothing but the runner: ``autorunner serve`` with an alert chat
announces the kill switch an operator turned on with the CLI, once, and its release, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.acceptance.runner import base_env, cli, start_server
from tests.fake_http import serving
from tests.fake_telegram import TelegramBot
from tests.helpers import eventually


async def test_a_pause_from_the_cli_reaches_the_alert_chat_once_and_the_resume_once(
    tmp_path: Path,
) -> None:
    bot = TelegramBot(delay=0)
    async with serving(bot) as bot_base:
        env = base_env(
            tmp_path / "runner.db",
            TELEGRAM_BOT_TOKEN="t0k",
            TELEGRAM_API_URL=bot_base,
            ALERT_TELEGRAM_CHAT="-1001",
            ALERT_INTERVAL="0.1",
            PAUSE_CHECK_SECONDS="0",
        )
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            paused = await asyncio.to_thread(cli, env, "pause", "--reason", "drill", cwd=tmp_path)
            assert paused.returncode == 0, paused.stderr

            async def told(n: int) -> bool:
                return len(bot.messages) >= n

            await eventually(lambda: told(1), within=10)
            resumed = await asyncio.to_thread(cli, env, "resume", cwd=tmp_path)
            assert resumed.returncode == 0, resumed.stderr
            await eventually(lambda: told(2), within=10)
        finally:
            assert await asyncio.to_thread(server.terminate) == 0
    assert bot.messages == [
        "🔴 autorunner: the kill switch is on (drill): no effect is performed",
        bot.messages[1],
    ]
    assert bot.messages[1].startswith("✅ autorunner resolved after ")
    assert bot.messages[1].endswith("the kill switch is on (drill): no effect is performed")
