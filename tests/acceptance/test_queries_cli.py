"""``autorunner queries …`` and ``autorunner stream`` in subprocesses, against a fake Auto served
by the test (a real HTTP server on loopback)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.acceptance.runner import autorunner_exe, base_env
from tests.fake_http import Reply, ScriptedServer, serving

QUERY_TOML = """
title = "BTC above 100k"
[query]
expiresIn = "24h"
[[query.actions]]
stepId = "s1"
type = "webhook"
params = { url = "http://127.0.0.1:3000/webhooks/auto" }
[query.conditions]
AND = [{ source = "price", method = "current", args = { symbol = "BTC" }, operator = ">", value = 100000 }]
"""


@dataclass
class Done:
    code: int
    out: str
    err: str


@pytest.fixture
async def auto(tmp_path: Path) -> AsyncIterator[tuple[ScriptedServer, dict[str, str]]]:
    server = ScriptedServer()
    async with serving(server) as base:
        env = base_env(
            tmp_path / "runner.db",
            ELFA_BASE_URL=f"{base}/v2/auto",
            ELFA_API_KEY="k-1",
            ELFA_HMAC_SECRET="h-1",
        )
        yield server, env


async def cli(env: dict[str, str], cwd: Path, *args: str) -> Done:
    process = await asyncio.create_subprocess_exec(
        autorunner_exe(),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


async def test_create_validates_first_then_creates_from_toml(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on(
        "POST",
        "/v2/auto/queries/validate",
        Reply(200, {"valid": True, "errors": [], "warnings": [], "estimatedCost": 1}),
    )
    server.on("POST", "/v2/auto/queries", Reply(201, {"id": "q-77", "status": "active"}))
    (tmp_path / "q.toml").write_text(QUERY_TOML)
    done = await cli(env, tmp_path, "queries", "create", "q.toml", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["query_id"] == "q-77"
    assert [r.path for r in server.requests] == ["/v2/auto/queries/validate", "/v2/auto/queries"]
    assert orjson.loads(server.requests[1].body)["query"]["conditions"]["AND"][0]["value"] == 100000
    assert "x-elfa-signature" in server.requests[1].headers


async def test_invalid_query_is_never_created(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on(
        "POST",
        "/v2/auto/queries/validate",
        Reply(200, {"valid": False, "errors": ["unknown source 'foo'"]}),
    )
    (tmp_path / "q.json").write_text('{"query": {}}')
    done = await cli(env, tmp_path, "queries", "create", "q.json")
    assert done.code == 1
    assert done.err.strip() == "autorunner: error: query is invalid: unknown source 'foo'"
    assert server.calls("POST", "/v2/auto/queries") == []
    validate = await cli(env, tmp_path, "queries", "validate", "q.json")
    assert validate.code == 1
    assert "error: unknown source 'foo'" in validate.out


async def test_cancel_of_an_ended_query_succeeds(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on("POST", "/v2/auto/queries/q-1/cancel", Reply(409, {"error": "query is not active"}))
    done = await cli(env, tmp_path, "queries", "cancel", "q-1")
    assert (done.code, done.out.strip()) == (0, "q-1 had already ended")


async def test_poll_and_list_print_json(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on(
        "GET",
        "/v2/auto/queries/q-1",
        Reply(
            200,
            {
                "queryId": "q-1",
                "status": "active",
                "executions": [{"id": "ex-1", "type": "notification", "status": "success"}],
            },
        ),
    )
    server.on(
        "GET",
        "/v2/auto/executions",
        Reply(
            200,
            {
                "data": [
                    {"id": "ex-1", "queryId": "q-1", "createdAt": "2026-11-01T00:00:00Z"},
                    {"id": "ex-2", "queryId": "q-1", "createdAt": "2026-11-02T00:00:00Z"},
                    {"id": "ex-3", "queryId": "q-2", "createdAt": "2026-10-01T00:00:00Z"},
                ],
                "pagination": {"total": 3, "limit": 100, "offset": 0, "hasMore": False},
            },
        ),
    )
    polled = await cli(env, tmp_path, "queries", "poll", "q-1", "--json")
    assert json.loads(polled.out)["executions"][0]["id"] == "ex-1"
    listed = await cli(env, tmp_path, "queries", "list", "--json")
    assert json.loads(listed.out) == [
        {"query_id": "q-1", "executions": 2, "last_execution": "2026-11-02T00:00:00Z"},
        {"query_id": "q-2", "executions": 1, "last_execution": "2026-10-01T00:00:00Z"},
    ]


async def test_list_reads_auto_s_query_listing_and_delete_refuses_an_active_query(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on(
        "GET",
        "/v2/auto/queries",
        Reply(
            200,
            {
                "queries": [
                    # As the simulator (and maybe Auto) lists it: with a count of executions.
                    {"id": "q-9", "title": "BTC above 100k", "status": "active", "executions": 3}
                ]
            },
        ),
    )
    server.on("DELETE", "/v2/auto/queries/q-9", Reply(409, {"error": "query is active"}))
    server.on("DELETE", "/v2/auto/queries/q-8", Reply(200, {"id": "q-8", "deletedAt": "now"}))
    listed = await cli(env, tmp_path, "queries", "list", "--status", "active", "--json")
    [row] = json.loads(listed.out)
    assert row == {
        "query_id": "q-9",
        "title": "BTC above 100k",
        "description": None,
        "status": "active",
        "created_at": None,
    }
    [request] = server.calls("GET", "/v2/auto/queries")
    assert request.query == "status=active&limit=50&offset=0"
    table = await cli(env, tmp_path, "queries", "list")
    assert "BTC above 100k" in table.out
    refused = await cli(env, tmp_path, "queries", "delete", "q-9")
    assert (refused.code, refused.err.strip()) == (
        1,
        "autorunner: error: q-9 is still active: `autorunner queries cancel q-9` first",
    )
    deleted = await cli(env, tmp_path, "queries", "delete", "q-8")
    assert (deleted.code, deleted.out.strip()) == (0, "deleted q-8")
    [signed] = server.calls("DELETE", "/v2/auto/queries/q-8")
    assert "x-elfa-signature" in signed.headers


async def test_unauthorized_is_one_line_naming_the_credential(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on("GET", "/v2/auto/queries/q-1", Reply(401, {"error": "invalid key"}))
    done = await cli(env, tmp_path, "queries", "poll", "q-1")
    assert done.code == 1
    assert done.err.strip().splitlines() == [
        "autorunner: error: Elfa Auto refused the credentials on GET /queries/q-1 (401): check ELFA_API_KEY: invalid key"
    ]


async def test_without_credentials_the_commands_say_what_to_set(tmp_path: Path) -> None:
    done = await cli(base_env(tmp_path / "x.db"), tmp_path, "queries", "poll", "q-1")
    assert done.code == 2  # configuration
    assert (
        done.err.strip()
        == "autorunner: error: no Elfa credential: set ELFA_API_KEY (or ELFA_AGENT_SECRET for x402 mode)"
    )


async def test_stream_stores_frames_and_polled_gaps_then_exits_when_the_query_ends(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    frame = {"status": "triggered", "title": "t", "queryId": "q-1", "executionId": "ex-sse"}
    body = f"event: notification\nid: f-1\ndata: {json.dumps(frame)}\n\nevent: end\ndata: {{}}\n\n".encode()
    server.on(
        "GET",
        "/v2/auto/queries/q-1/stream",
        Reply(200, raw=body, headers={"content-type": "text/event-stream"}),
    )
    server.on(
        "GET",
        "/v2/auto/queries/q-1",
        Reply(200, {"queryId": "q-1", "status": "active", "executions": []}),
        Reply(
            200,
            {
                "queryId": "q-1",
                "status": "expired",
                "executions": [{"id": "ex-polled"}, {"id": "ex-sse"}],
            },
        ),
    )
    done = await cli(env, tmp_path, "stream", "--query", "q-1")
    assert done.code == 0, done.err
    with sqlite3.connect(tmp_path / "runner.db") as conn:
        rows = dict(conn.execute("SELECT execution_id, channel FROM events").fetchall())
    assert rows == {"ex-sse": "sse", "ex-polled": "poll"}


async def test_stream_refused_by_auto_exits_with_one_line_naming_the_credential(
    auto: tuple[ScriptedServer, dict[str, str]], tmp_path: Path
) -> None:
    server, env = auto
    server.on("GET", "/v2/auto/queries/q-1/stream", Reply(401, {"error": "invalid key"}))
    done = await cli(env, tmp_path, "stream", "--query", "q-1")
    assert done.code == 1
    assert [line for line in done.err.splitlines() if line.startswith("autorunner: error:")] == [
        "autorunner: error: Elfa Auto refused the credentials on GET /queries/q-1/stream (401): check ELFA_API_KEY: invalid key"
    ]
