"""The log as a person reads it: ``autorunner serve`` writing to a terminal-style console gives
one short line per event (a warning mark for what was denied), with per-event chatter left for
``LOG_LEVEL=debug``; JSON lines keep their shape and gain the same facts; a restart's reconcile
of executions the store already holds is one line, not one per duplicate."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import httpx2

from autorunner.sim.sender import sample_event, send_event
from tests.acceptance.runner import SECRET, Server, base_env, start_server
from tests.fake_http import Reply, ScriptedServer, serving
from tests.helpers import eventually
from tests.integration.test_subscriber import END, POLL, SSE, STREAM, poll_reply

POLICY = """
[default]
allowed_actions = ["notify", "exchange"]  # no exchange is configured: denied
[[default.rules]]
actions = [
  { step = "say", kind = "notify", params = { text = "seen ${event_id}" } },
  { step = "buy", kind = "exchange", params = { symbol = "BTC/USDT", side = "buy", type = "market", amount = 1 } },
]
"""


def done(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events WHERE status = 'done'").fetchone()[0])


async def run_two_events(tmp_path: Path, **extra: str) -> str:
    """Serve, send two events (one twice), stop; the process's whole log."""
    db = tmp_path / "runner.db"
    (tmp_path / "policy.toml").write_text(POLICY)
    env = base_env(db, RUNNER_POLICY=str(tmp_path / "policy.toml"), **extra)
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    async with httpx2.AsyncClient(timeout=5) as client:
        for event_id in ("h-1", "h-2", "h-2"):
            body = sample_event(event_id=event_id, symbol="ETH")
            await send_event(client, server.url, SECRET, body, event_id=event_id)

    async def both() -> bool:
        return done(db) == 2

    await eventually(both, within=30)
    assert await asyncio.to_thread(server.terminate) == 0
    return server.log_path.read_text()


async def test_a_console_shows_one_short_line_per_event_with_what_was_denied(
    tmp_path: Path,
) -> None:
    text = await run_two_events(tmp_path, LOG_FORMAT="console")
    lines = [line for line in text.splitlines() if "ETH price alert" in line]
    assert len(lines) == 2, text
    for line in lines:
        assert re.fullmatch(
            r"\d\d:\d\d:\d\d  ⚠ ETH price alert +default +notify ✓  denied exchange \(.+\)"
            r"  [\d.]+ ms",
            line,
        ), line
    assert "event.accepted" not in text
    assert "event.duplicate" not in text


async def test_debug_on_a_console_adds_the_per_event_lines_and_ids(tmp_path: Path) -> None:
    text = await run_two_events(tmp_path, LOG_FORMAT="console", LOG_LEVEL="debug")
    assert "event.accepted  event_id=h-1" in text
    assert "event.duplicate  event_id=h-2" in text


async def test_json_lines_keep_every_line_and_carry_the_event_line_as_fields(
    tmp_path: Path,
) -> None:
    text = await run_two_events(tmp_path, LOG_FORMAT="json")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == len(text.splitlines()), "nothing but JSON lines"
    names = [line["event"] for line in lines]
    assert names.count("event.accepted") == 2
    assert names.count("event.duplicate") == 1
    finished = [line for line in lines if line["event"] == "job.done"]
    assert {line["event_id"] for line in finished} == {"h-1", "h-2"}
    for line in finished:
        assert line["title"] == "ETH price alert"
        assert line["route"] == "default"
        assert line["effects"] == ["notify:done"]
        assert line["denied"][0].startswith("exchange (")
        assert line["ms"] > 0


async def test_a_restart_reconciling_executions_already_held_logs_one_line_for_them(
    tmp_path: Path,
) -> None:
    auto = ScriptedServer()
    held = [f"ex-{n}" for n in range(5)]
    auto.on("GET", POLL, poll_reply(*held))
    auto.on("GET", STREAM, Reply(200, raw=END, headers=SSE))  # connects, reconciles, ends
    db = tmp_path / "runner.db"
    async with serving(auto) as base:
        env = base_env(
            db, ELFA_API_KEY="k-1", ELFA_BASE_URL=f"{base}/v2/auto", RECONCILE_INTERVAL="3600"
        )
        for run in ("first", "second"):
            server = start_server(
                env | {"STREAM_QUERIES": "q-1"}, tmp_path, tmp_path / f"{run}.log"
            )

            async def all_done(running: Server = server) -> bool:
                lines = running.log_lines()
                stopped = any(line["event"] == "stream.stopped" for line in lines)
                return stopped and done(db) == len(held)  # reconciled and ended

            await eventually(all_done, within=30)
            assert await asyncio.to_thread(server.terminate) == 0
    second = [json.loads(line) for line in (tmp_path / "second.log").read_text().splitlines()]
    reconciled = [line for line in second if line["event"] == "reconcile.done"]
    assert reconciled
    assert all(line["known"] == len(held) for line in reconciled)
    assert all(line["new"] == 0 for line in reconciled)
    assert not [line for line in second if line["event"] == "event.duplicate"]
