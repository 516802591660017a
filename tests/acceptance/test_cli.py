"""The CLI as a user drives it: serve, send-test-event, events, status, dlq, and clear errors."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from autorunner.store import sqlite as sqlite_store
from tests.acceptance.runner import Server, autorunner_exe, base_env, cli, start_server
from tests.helpers import eventually


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    env = base_env(tmp_path / "runner.db")
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        yield server, env
    finally:
        assert server.terminate() == 0


def wait_done(env: dict[str, str], cwd: Path, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shown = cli(env, "events", "show", event_id, "--json", cwd=cwd)
        if shown.returncode == 0 and json.loads(shown.stdout)["status"] == "done":
            return dict(json.loads(shown.stdout))
        time.sleep(0.1)
    raise AssertionError(f"{event_id} did not finish")


def test_send_test_event_then_events_list_show_and_status(
    served: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    sent = cli(
        env,
        "send-test-event",
        server.url,
        "--event-id",
        "cli-1",
        "--execution-id",
        "x-1",
        cwd=tmp_path,
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("202 ")

    duplicate = cli(
        env,
        "send-test-event",
        server.url,
        "--event-id",
        "cli-2",
        "--execution-id",
        "x-1",
        "--json",
        cwd=tmp_path,
    )
    assert duplicate.returncode == 0
    assert json.loads(duplicate.stdout)["response"]["duplicate"] is True

    # The execution is the event's identity; every id a delivery carried finds it.
    detail = wait_done(env, tmp_path, "cli-1")
    assert detail["event_id"] == "x-1"
    assert [e["effect_key"] for e in detail["effects"]] == ["x-1:notify"]
    assert wait_done(env, tmp_path, "cli-2")["event_id"] == "x-1"

    listed = cli(env, "events", "list", "--json", cwd=tmp_path)
    assert [e["event_id"] for e in json.loads(listed.stdout)] == ["x-1"]
    table = cli(env, "events", "list", cwd=tmp_path)
    assert "x-1" in table.stdout

    status = json.loads(cli(env, "status", "--json", cwd=tmp_path).stdout)
    assert status["events"] == {"done": 1}
    assert (status["queue_depth"], status["in_flight"], status["dead_letters"]) == (0, 0, 0)

    assert json.loads(cli(env, "dlq", "list", "--json", cwd=tmp_path).stdout) == []
    notified = [line for line in server.log_lines() if line.get("event") == "effect.notify"]
    assert [line["event_id"] for line in notified] == ["x-1"]


def test_invalid_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = base_env(tmp_path / "x.db", PORT="not-a-port")
    result = cli(env, "status", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "autorunner: error: invalid PORT: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_unsupported_queue_url_is_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path / "x.db", QUEUE_URL="kafka://nope")
    result = cli(env, "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "QUEUE_URL" in result.stderr


@pytest.fixture
def empty_db(tmp_path: Path) -> dict[str, str]:
    env = base_env(tmp_path / "x.db")
    assert cli(env, "status", cwd=tmp_path).returncode == 2  # no database yet
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    assert server.terminate() == 0
    return env


def test_inspecting_where_no_database_exists_names_the_path_instead_of_creating_one(
    tmp_path: Path,
) -> None:
    result = cli(base_env(tmp_path / "nowhere.db"), "events", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        f"autorunner: error: no database at {tmp_path / 'nowhere.db'}"
    )
    assert not (tmp_path / "nowhere.db").exists()


def test_redrive_of_an_unknown_event_fails_with_one_line(
    tmp_path: Path, empty_db: dict[str, str]
) -> None:
    env = empty_db
    result = cli(env, "dlq", "redrive", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "autorunner: error: no dead letter with id 'nope'"
    both = cli(env, "dlq", "redrive", "nope", "--all", cwd=tmp_path)
    assert both.stderr.strip() == "autorunner: error: give exactly one of EVENT_ID or --all"


def test_show_of_an_unknown_event_fails_with_one_line(
    tmp_path: Path, empty_db: dict[str, str]
) -> None:
    result = cli(empty_db, "events", "show", "missing", cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "autorunner: error: no event with id 'missing'",
    )


def test_send_test_event_to_nothing_listening_fails_with_one_line(tmp_path: Path) -> None:
    result = cli(
        base_env(tmp_path / "x.db"),
        "send-test-event",
        "http://127.0.0.1:9/webhooks/auto",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "autorunner: error: cannot reach http://127.0.0.1:9/webhooks/auto"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigterm_stops_serve_cleanly(tmp_path: Path) -> None:
    env = base_env(tmp_path / "runner.db")
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    assert server.terminate() == 0
    assert any(line.get("event") == "serve.stopped" for line in server.log_lines())


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(base_env(tmp_path / "x.db", PORT=str(port)), "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"autorunner: error: cannot listen on 127.0.0.1:{port}: Address already in use (set HOST/PORT)"
    ]


def test_serve_without_a_webhook_secret_refuses_to_start(tmp_path: Path) -> None:
    env = base_env(tmp_path / "x.db")
    del env["AUTO_SECRET"]
    result = cli(env, "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "autorunner: error: AUTO_SECRET is not set, so every signed webhook would be refused: "
        "set it (comma-separated for rotation) or set AUTO_ALLOW_UNSIGNED=true"
    ]


def test_a_group_without_its_subcommand_shows_help_without_an_error_line(tmp_path: Path) -> None:
    result = cli(base_env(tmp_path / "x.db"), "events", cwd=tmp_path)
    assert result.returncode == 2
    assert "list" in result.stdout
    assert "error" not in result.stderr


def test_send_test_event_refused_by_the_runner_exits_1(
    served: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    result = cli(env, "send-test-event", server.url, "--secret", "not-the-secret", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("401 ")


async def test_demo_runs_a_simulated_auto_and_each_trigger_runs_once(tmp_path: Path) -> None:
    env = base_env(tmp_path / "demo.db")
    del env["AUTO_SECRET"]
    server = start_server(env, tmp_path, tmp_path / "demo.log", "--demo", "3")
    try:

        async def summed_up() -> bool:
            return any(line.get("event") == "demo.summary" for line in server.log_lines())

        await eventually(summed_up, within=40)
    finally:
        assert server.terminate() == 0
    lines = server.log_lines()
    assert sum(line.get("event") == "effect.notify" for line in lines) == 3
    assert sum(line.get("event") == "event.duplicate" for line in lines) >= 1
    [summary] = [line for line in lines if line.get("event") == "demo.summary"]
    assert re.fullmatch(r"3 triggers, 3 runs, [1-9]\d* duplicates recognised", summary["summary"])
    # The hint's command works as written, from the folder the demo ran in.
    hint = re.fullmatch(r"see them with: (.+) events list; stop with Ctrl-C", summary["hint"])
    assert hint is not None
    listed = await asyncio.to_thread(
        subprocess.run,
        [*shlex.split(hint.group(1)), "events", "list", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 3


def test_status_speaks_to_people_and_lists_the_live_workers(
    served: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    for _ in range(2):
        cli(env, "send-test-event", server.url, "--event-id", "twice", cwd=tmp_path)
    wait_done(env, tmp_path, "twice")
    data = json.loads(cli(env, "status", "--json", cwd=tmp_path).stdout)
    [worker] = data["workers"]
    assert (worker["role"], worker["alive"], data["duplicates"]) == ("serve", True, 1)
    assert worker["heartbeat_age_seconds"] < 5
    human = cli(env, "status", cwd=tmp_path).stdout
    assert "workers      1 alive" in human
    assert f"{worker['name']} (serve): heartbeat" in human
    assert "1 done; 1 duplicate deliveries recognised" in human
    assert "{" not in human


def test_a_stopped_runner_is_not_listed_as_a_worker(
    tmp_path: Path, empty_db: dict[str, str]
) -> None:
    assert json.loads(cli(empty_db, "status", "--json", cwd=tmp_path).stdout)["workers"] == []


def test_rejected_deliveries_can_be_listed(
    served: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    (tmp_path / "odd.json").write_text('{"hello": "world"}')
    sent = cli(env, "send-test-event", server.url, "--body", "odd.json", cwd=tmp_path)
    assert sent.stdout.startswith("400 ")
    listed = cli(env, "rejected", "list", cwd=tmp_path)
    assert listed.returncode == 0
    assert "invalid_body" in listed.stdout
    assert '{"hello":"world"}' in listed.stdout.replace(" ", "")
    [kept] = json.loads(cli(env, "rejected", "list", "--json", cwd=tmp_path).stdout)
    assert kept["reason"].startswith("invalid_body: unknown event shape")


def test_version_and_shell_completion(tmp_path: Path) -> None:
    env = base_env(tmp_path / "x.db")
    version = cli(env, "--version", cwd=tmp_path)
    assert (version.returncode, version.stdout.strip()) == (0, "autorunner 0.1.0")
    completion = cli({**env, "_AUTORUNNER_COMPLETE": "source_bash"}, cwd=tmp_path)
    assert completion.returncode == 0
    assert "_autorunner_completion" in completion.stdout


def test_inspection_never_migrates_an_older_database(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        for statement in sqlite_store.migrations()[0].split(";\n"):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    result = cli(base_env(db), "status", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"autorunner: error: {db} has schema version 1, older than this autorunner"
        f" ({len(sqlite_store.migrations())}): run `autorunner serve` of this version on it first"
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)


def test_a_sqlite_url_in_a_folder_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path / "no-such-folder" / "runner.db")
    result = cli(env, "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"autorunner: error: cannot create the SQLite database {tmp_path}/no-such-folder/runner.db:"
        f" the folder {tmp_path}/no-such-folder does not exist (check QUEUE_URL / DATABASE_URL)"
    )
    assert not (tmp_path / "no-such-folder").exists()


def test_serve_stops_on_sigterm_after_the_reader_of_its_output_went_away(tmp_path: Path) -> None:
    """``autorunner serve | head -1``: once ``head`` exits, every log write fails; SIGTERM must
    still stop the runner cleanly."""
    process = subprocess.Popen(
        [autorunner_exe(), "serve"],
        env=base_env(tmp_path / "runner.db"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    while b"serve.started" not in process.stdout.readline():
        assert process.poll() is None, "serve exited before it started"
    process.stdout.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("secret", ["", " ", ","])
def test_serve_refuses_a_blank_auto_secret_as_it_refuses_a_missing_one(
    tmp_path: Path, secret: str
) -> None:
    result = cli(base_env(tmp_path / "x.db", AUTO_SECRET=secret), "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert re.match(
        r"autorunner: error: AUTO_SECRET is (empty|not set), so every signed webhook would be"
        r" refused",
        result.stderr.strip(),
    )


def test_options_that_do_not_fit_together_and_unknown_paths_are_one_clear_answer(
    served: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    server, env = served
    (tmp_path / "b.json").write_text('{"eventType": "query.triggered", "eventId": "b1"}')
    both = cli(
        env, "send-test-event", server.url, "--body", "b.json", "--execution-id", "x", cwd=tmp_path
    )
    assert (both.returncode, both.stderr.strip()) == (
        2,
        "autorunner: error: --execution-id shapes the sample body: with --body, put executionId"
        " in the file",
    )
    missing = cli(env, "send-test-event", server.url, "--body", "nope.json", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "autorunner: error: cannot read nope.json: No such file or directory",
    )
    nowhere = httpx2.get(server.url.replace("/webhooks/auto", "/nowhere"), timeout=5)
    assert (nowhere.status_code, nowhere.json()) == (
        404,
        {"error": "not_found", "detail": "no route /nowhere"},
    )
    memory = cli({**env, "QUEUE_URL": "memory://"}, "events", "list", cwd=tmp_path)
    assert memory.returncode == 2
    assert "memory:// keeps nothing between processes" in memory.stderr


def test_resume_says_when_nothing_was_paused_and_status_says_paused_or_not(
    tmp_path: Path, empty_db: dict[str, str]
) -> None:
    assert cli(empty_db, "resume", cwd=tmp_path).stdout.strip() == "not paused: nothing to resume"
    assert "  paused       no" in cli(empty_db, "status", cwd=tmp_path).stdout
    cli(empty_db, "pause", "--reason", "drill", cwd=tmp_path)
    assert "  PAUSED       drill" in cli(empty_db, "status", cwd=tmp_path).stdout
    assert cli(empty_db, "resume", cwd=tmp_path).stdout.strip() == "resumed"
