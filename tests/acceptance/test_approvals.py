"""Approval gates from outside: ``autorunner serve`` in a subprocess, a fake Bot API that sends
real ``callback_query`` updates, a fake internal API where the gated order lands — a restart
while waiting, a stranger's press, the CLI's answers and a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx2

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.acceptance.test_console import OPERATOR, READER, logged_in
from tests.fake_api import IdempotentApi
from tests.fake_http import serving
from tests.fake_telegram import ApproversBot
from tests.helpers import eventually

DESK_CHAT, APPROVER, STRANGER = -1001, 42, 99
SECRET = "X-Telegram-Bot-Api-Secret-Token"

POLICY = """
[approvers.desk]
chat_id = -1001
user_ids = [42]

[default]
allowed_actions = ["http"]
approval = { actions = ["http"], approvers = ["desk"], timeout_seconds = TIMEOUT }
[[default.rules]]
actions = [{ step = "order", kind = "http", params = { endpoint = "orders", body = { notional_usd = 100 } } }]
"""


def env_for(
    tmp_path: Path, api_base: str, bot_base: str, *, timeout: float = 900
) -> dict[str, str]:
    (tmp_path / "policy.toml").write_text(POLICY.replace("TIMEOUT", str(timeout)))
    return base_env(
        tmp_path / "runner.db",
        RUNNER_POLICY=str(tmp_path / "policy.toml"),
        HTTP_ENDPOINTS=f"orders={api_base}/orders",
        TELEGRAM_BOT_TOKEN="bot-token-1",
        TELEGRAM_API_URL=bot_base,
        APPROVALS_POLL_SECONDS="1",
    )


def send(env: dict[str, str], server: Server, event_id: str, cwd: Path) -> None:
    sent = cli(env, "send-test-event", server.url, "--event-id", event_id, cwd=cwd)
    assert sent.returncode == 0, sent.stderr


def status(tmp_path: Path, event_id: str) -> str:
    with sqlite3.connect(tmp_path / "runner.db") as db:
        row = db.execute("SELECT status FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return str(row[0]) if row else "missing"


def shown(env: dict[str, str], event_id: str, cwd: Path) -> dict[str, Any]:
    result = cli(env, "events", "show", event_id, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


async def test_an_approval_survives_a_restart_ignores_a_stranger_and_runs_the_order_once(
    tmp_path: Path,
) -> None:
    api, bot = IdempotentApi(fail_every=1000), ApproversBot()
    async with serving(api) as api_base, serving(bot) as bot_base:
        env = env_for(tmp_path, api_base, bot_base)
        first = start_server(env, tmp_path, tmp_path / "first.log")
        try:
            send(env, first, "ap-1", tmp_path)
            await eventually(lambda: _true(len(bot.sent) == 1), within=20)
        finally:
            assert first.terminate() == 0
        [request] = bot.sent
        assert request["chat_id"] == DESK_CHAT
        assert "order: http" in request["text"]
        assert status(tmp_path, "ap-1") == "awaiting"
        assert api.calls == {}

        second = start_server(env, tmp_path, tmp_path / "second.log")
        try:
            bot.press(request, approve=True, user_id=STRANGER)  # in the chat, not an approver
            await eventually(lambda: _true(len(bot.answers) == 1), within=20)
            assert bot.answers[0]["text"] == "Not yours to answer."
            assert status(tmp_path, "ap-1") == "awaiting"
            bot.press(request, approve=True, user_id=APPROVER, chat_id=-5)  # another chat
            await eventually(lambda: _true(len(bot.answers) == 2), within=20)
            assert status(tmp_path, "ap-1") == "awaiting"

            bot.press(request, approve=True, user_id=APPROVER)
            await eventually(lambda: _true(status(tmp_path, "ap-1") == "done"), within=20)
            bot.press(request, approve=False, user_id=APPROVER)  # a second answer: nothing
            await eventually(lambda: _true(len(bot.answers) == 4), within=20)
        finally:
            assert second.terminate() == 0
    assert api.performed == {"ap-1:order": 1}
    assert "was approved already" in bot.answers[3]["text"]
    record = shown(env, "ap-1", tmp_path)
    asked, acted = record["runs"][0], record["runs"][-1]
    assert asked["outcome"] == "awaiting"
    assert acted["approval"]["answered_by"] == f"telegram:user{APPROVER}"
    assert (acted["approval"]["answered_via"], acted["approval"]["status"]) == (
        "telegram",
        "approved",
    )
    assert [o["action"] for o in record["operations"]] == ["approval.approve"]


async def test_the_cli_lists_and_rejects_and_the_verdict_says_who_and_why(tmp_path: Path) -> None:
    api, bot = IdempotentApi(fail_every=1000), ApproversBot()
    async with serving(api) as api_base, serving(bot) as bot_base:
        env = env_for(tmp_path, api_base, bot_base)
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            send(env, server, "ap-2", tmp_path)
            await eventually(lambda: _true(status(tmp_path, "ap-2") == "awaiting"), within=20)
            listed = json.loads(cli(env, "approvals", "list", "--json", cwd=tmp_path).stdout)
            [pending] = listed
            assert (pending["status"], pending["event_id"]) == ("pending", "ap-2")
            rejected = cli(
                env,
                "approvals",
                "reject",
                pending["approval_id"],
                "--reason",
                "too big",
                cwd=tmp_path,
            )
            assert rejected.returncode == 0, rejected.stderr
            again = cli(env, "approvals", "approve", pending["approval_id"], cwd=tmp_path)
            assert again.returncode != 0
            assert "was rejected already" in again.stderr
            await eventually(lambda: _true(status(tmp_path, "ap-2") == "done"), within=20)
        finally:
            assert server.terminate() == 0
        missing = cli(env, "approvals", "approve", "ap-nothing", cwd=tmp_path)
    assert missing.returncode != 0
    assert "no approval with id 'ap-nothing'" in missing.stderr
    assert api.calls == {}
    [denied] = shown(env, "ap-2", tmp_path)["runs"][-1]["verdict"]["denied"]
    assert denied["reason"].startswith("rejected by ")
    assert "via cli: too big" in denied["reason"]


async def test_an_unanswered_approval_times_out_as_the_route_says(tmp_path: Path) -> None:
    api, bot = IdempotentApi(fail_every=1000), ApproversBot()
    async with serving(api) as api_base, serving(bot) as bot_base:
        env = env_for(tmp_path, api_base, bot_base, timeout=1)
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            send(env, server, "ap-3", tmp_path)
            await eventually(lambda: _true(status(tmp_path, "ap-3") == "done"), within=30)
        finally:
            assert server.terminate() == 0
    assert api.calls == {}
    run = shown(env, "ap-3", tmp_path)["runs"][-1]
    assert run["approval"]["status"] == "expired"
    [denied] = run["verdict"]["denied"]
    assert "timed out" in denied["reason"]


async def _true(value: bool) -> bool:
    return value


async def test_answers_by_webhook_need_telegrams_secret_token(tmp_path: Path) -> None:
    api, bot = IdempotentApi(fail_every=1000), ApproversBot()
    async with serving(api) as api_base, serving(bot) as bot_base:
        env = {
            **env_for(tmp_path, api_base, bot_base),
            "TELEGRAM_WEBHOOK_SECRET": "hook-secret-0123456789",
        }
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            send(env, server, "ap-4", tmp_path)
            await eventually(lambda: _true(len(bot.sent) == 1), within=20)
            hook = server.url.replace("/webhooks/auto", "/telegram/updates")
            press = bot.press(bot.sent[0], approve=True, user_id=APPROVER)
            async with httpx2.AsyncClient(timeout=5) as client:
                forged = await client.post(hook, json=press, headers={SECRET: "guess"})
                unsigned = await client.post(hook, json=press)
                assert (forged.status_code, unsigned.status_code) == (401, 401)
                assert status(tmp_path, "ap-4") == "awaiting"
                real = await client.post(
                    hook, json=press, headers={SECRET: "hook-secret-0123456789"}
                )
                assert real.status_code == 200
            await eventually(lambda: _true(status(tmp_path, "ap-4") == "done"), within=20)
        finally:
            assert server.terminate() == 0
    assert bot.polls == 0  # the webhook replaces polling
    assert api.performed == {"ap-4:order": 1}


async def test_the_console_lists_and_approves_and_a_read_only_session_cannot(
    tmp_path: Path,
) -> None:
    api, bot = IdempotentApi(fail_every=1000), ApproversBot()
    async with serving(api) as api_base, serving(bot) as bot_base:
        env = {
            **env_for(tmp_path, api_base, bot_base),
            "CONSOLE_TOKEN": OPERATOR,
            "CONSOLE_READONLY_TOKEN": READER,
        }
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            send(env, server, "ap-5", tmp_path)
            await eventually(lambda: _true(status(tmp_path, "ap-5") == "awaiting"), within=20)
            reader, reader_csrf = await asyncio.to_thread(logged_in, server, READER)
            operator, csrf = await asyncio.to_thread(logged_in, server, OPERATOR)
            with contextlib.closing(reader), contextlib.closing(operator):
                page = operator.get("/approvals").text
                found = re.search(r'<tr id="(ap-[0-9a-f]+)">', page)
                assert found, page
                answer = f"/approvals/{found.group(1)}/answer"
                refused = reader.post(answer, data={"csrf": reader_csrf, "answer": "approve"})
                assert refused.status_code == 403
                done = operator.post(
                    answer, data={"csrf": csrf, "answer": "approve", "reason": "checked"}
                )
                assert done.status_code == 200, done.text
                again = operator.post(answer, data={"csrf": csrf, "answer": "reject"})
                assert again.status_code == 409
            await eventually(lambda: _true(status(tmp_path, "ap-5") == "done"), within=20)
        finally:
            assert server.terminate() == 0
    assert api.performed == {"ap-5:order": 1}
    [journaled] = shown(env, "ap-5", tmp_path)["operations"]
    assert (journaled["actor"], journaled["action"]) == (
        "console:alice:operator@127.0.0.1",
        "approval.approve",
    )
