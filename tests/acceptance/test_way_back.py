"""The operator's way back, through the CLI: pause holds events instead of denying them, and a
finished event can be rerun on purpose as a new decision generation, journaled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.fake_api import IdempotentApi
from tests.fake_http import serving
from tests.helpers import eventually

POLICY = """
[default]
allowed_actions = ["http"]
[[default.rules]]
actions = [{ step = "order", kind = "http", params = { endpoint = "orders", body = { event = "${event_id}" } } }]
"""


@asynccontextmanager
async def runner(
    tmp_path: Path, api: IdempotentApi
) -> AsyncIterator[tuple[Server, dict[str, str]]]:
    (tmp_path / "policy.toml").write_text(POLICY)
    async with serving(api) as base:
        env = base_env(
            tmp_path / "runner.db",
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            HTTP_ENDPOINTS=f"orders={base}/orders",
            PAUSE_CHECK_SECONDS="0",
        )
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            yield server, env
        finally:
            assert server.terminate() == 0


def show(env: dict[str, str], cwd: Path, event_id: str) -> dict[str, Any]:
    shown = cli(env, "events", "show", event_id, "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


async def status_is(env: dict[str, str], cwd: Path, event_id: str, status: str) -> bool:
    return bool(show(env, cwd, event_id)["status"] == status)


async def logged(server: Server, event: str) -> bool:
    return any(line.get("event") == event for line in server.log_lines())


def send(env: dict[str, str], server: Server, cwd: Path, event_id: str) -> None:
    sent = cli(env, "send-test-event", server.url, "--event-id", event_id, cwd=cwd)
    assert sent.returncode == 0, sent.stderr


async def test_pause_holds_an_event_and_resume_runs_it_once_allowed(tmp_path: Path) -> None:
    api = IdempotentApi(fail_every=1000)
    async with runner(tmp_path, api) as (server, env):
        assert cli(env, "pause", "--reason", "desk offline", cwd=tmp_path).returncode == 0
        await eventually(lambda: logged(server, "worker.paused"))
        send(env, server, tmp_path, "held-1")
        assert show(env, tmp_path, "held-1")["status"] == "pending"
        assert json.loads(cli(env, "status", "--json", cwd=tmp_path).stdout)["paused"] == (
            "desk offline"
        )
        assert cli(env, "resume", cwd=tmp_path).returncode == 0
        await eventually(lambda: status_is(env, tmp_path, "held-1", "done"))
    assert dict(api.performed) == {"held-1:order": 1}
    detail = show(env, tmp_path, "held-1")
    [run] = detail["runs"]
    assert [a["step_id"] for a in run["verdict"]["allowed"]] == ["order"]
    assert run["verdict"]["denied"] == []
    ops = json.loads(cli(env, "events", "show", "held-1", "--json", cwd=tmp_path).stdout)
    assert ops["operations"] == []  # pause and resume are runner-wide, journaled without an event


async def test_rerun_executes_a_finished_event_again_under_new_effect_keys(tmp_path: Path) -> None:
    api = IdempotentApi(fail_every=1000)
    async with runner(tmp_path, api) as (server, env):
        send(env, server, tmp_path, "again-1")
        await eventually(lambda: status_is(env, tmp_path, "again-1", "done"))

        unconfirmed = cli(env, "events", "rerun", "again-1", cwd=tmp_path)
        assert unconfirmed.returncode == 2
        assert unconfirmed.stderr.strip().endswith("pass --yes to confirm")
        assert "again-1 (generation 2, route default): would do order (http)" in unconfirmed.stdout

        rerun = cli(
            env, "events", "rerun", "again-1", "--yes", "--note", "desk asked", cwd=tmp_path
        )
        assert rerun.returncode == 0, rerun.stderr
        await eventually(lambda: _performed(api, 2))
        await eventually(lambda: status_is(env, tmp_path, "again-1", "done"))
    assert dict(api.performed) == {"again-1:order": 1, "again-1:order~2": 1}
    detail = show(env, tmp_path, "again-1")
    assert detail["generation"] == 2
    [operation] = detail["operations"]
    assert (operation["action"], operation["detail"]) == ("events.rerun", {"note": "desk asked"})
    human = cli(env, "events", "show", "again-1", cwd=tmp_path).stdout
    assert "decision generation 2" in human
    assert "events.rerun" in human


async def test_rerun_under_another_policy_acts_on_the_decision_made_under_it(
    tmp_path: Path,
) -> None:
    api = IdempotentApi(fail_every=1000)
    (tmp_path / "corrected.toml").write_text(
        POLICY.replace('event = "${event_id}"', 'event = "${event_id}", corrected = true')
    )
    async with runner(tmp_path, api) as (server, env):
        send(env, server, tmp_path, "fix-1")
        await eventually(lambda: status_is(env, tmp_path, "fix-1", "done"))
        rerun = cli(
            env,
            "events",
            "rerun",
            "fix-1",
            "--policy",
            "corrected.toml",
            "--yes",
            "--json",
            cwd=tmp_path,
        )
        assert rerun.returncode == 0, rerun.stderr
        await eventually(lambda: _performed(api, 2))
    assert api.bodies == {
        "fix-1:order": {"event": "fix-1"},
        "fix-1:order~2": {"event": "fix-1", "corrected": True},
    }
    [operation] = show(env, tmp_path, "fix-1")["operations"]
    assert operation["detail"]["policy_hash"] == json.loads(rerun.stdout)["policy_hash"]


async def test_only_finished_events_can_be_rerun_and_a_missing_one_is_named(
    tmp_path: Path,
) -> None:
    api = IdempotentApi(fail_every=1000)
    async with runner(tmp_path, api) as (server, env):
        assert cli(env, "pause", cwd=tmp_path).returncode == 0
        await eventually(lambda: logged(server, "worker.paused"))
        send(env, server, tmp_path, "waiting")
        refused = cli(env, "events", "rerun", "waiting", "--yes", cwd=tmp_path)
        missing = cli(env, "events", "rerun", "nope", "--yes", cwd=tmp_path)
        assert cli(env, "resume", cwd=tmp_path).returncode == 0
    assert (refused.returncode, refused.stderr.strip()) == (
        1,
        "autorunner: error: event 'waiting' is pending: only finished events (done, dead) can be"
        " rerun",
    )
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "autorunner: error: no event with id 'nope'",
    )


async def _performed(api: IdempotentApi, n: int) -> bool:
    return len(api.performed) >= n
