"""The policy file as an operator meets it: a bad file stops serve; SIGHUP swaps in a new one."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.helpers import eventually, readme_policy

POLICY = """
[default]
allowed_actions = ["notify"]
[[default.rules]]
actions = [{ step = "notify", kind = "notify", params = { text = "VERSION-A ${title}" } }]
"""


def test_an_invalid_policy_file_stops_serve_with_one_line_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY.replace('kind = "notify"', 'kind = "telegram"'))
    env = base_env(tmp_path / "x.db", RUNNER_POLICY=str(tmp_path / "policy.toml"))
    result = cli(env, "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"autorunner: error: {tmp_path / 'policy.toml'}: default route: "
        "rule 1 proposes 'telegram', which allowed_actions does not list"
    ]


async def notified(server: Server, marker: str) -> bool:
    return any(
        marker in str(line.get("text"))
        for line in server.log_lines()
        if line.get("event") == "effect.notify"
    )


async def test_sighup_reloads_the_policy_and_a_broken_file_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = base_env(tmp_path / "runner.db", RUNNER_POLICY=str(policy))
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        assert (
            cli(env, "send-test-event", server.url, "--event-id", "one", cwd=tmp_path).returncode
            == 0
        )
        await eventually(lambda: notified(server, "VERSION-A"))

        policy.write_text(POLICY.replace("VERSION-A", "VERSION-B"))
        server.process.send_signal(signal.SIGHUP)
        await eventually(lambda: _logged(server, "policy.reloaded"))
        assert (
            cli(env, "send-test-event", server.url, "--event-id", "two", cwd=tmp_path).returncode
            == 0
        )
        await eventually(lambda: notified(server, "VERSION-B"))

        policy.write_text("not [valid")
        server.process.send_signal(signal.SIGHUP)
        await eventually(lambda: _logged(server, "policy.reload_failed"))
        assert (
            cli(env, "send-test-event", server.url, "--event-id", "three", cwd=tmp_path).returncode
            == 0
        )
        await eventually(lambda: _count(server, "VERSION-B", 2))
    finally:
        assert server.terminate() == 0
    hashes = {
        line["policy_hash"] for line in server.log_lines() if line.get("event") == "policy.reloaded"
    }
    assert len(hashes) == 1


async def _logged(server: Server, event: str) -> bool:
    return any(line.get("event") == event for line in server.log_lines())


async def _count(server: Server, marker: str, n: int) -> bool:
    lines = [line for line in server.log_lines() if line.get("event") == "effect.notify"]
    return sum(marker in str(line.get("text")) for line in lines) >= n


STRICT = """
[default]
allowed_actions = ["notify"]

[[routes]]
name = "no-eth"
match = { symbol = "ETH" }
allowed_actions = []
"""


async def test_replay_with_a_stricter_policy_reports_only_changed_events_and_runs_nothing(
    tmp_path: Path,
) -> None:
    env = base_env(tmp_path / "runner.db")
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        for n, symbol in enumerate(["BTC", "ETH", "SOL", "ETH"]):
            body = tmp_path / f"b{n}.json"
            body.write_text(
                f'{{"eventType": "query.triggered", "eventId": "r{n}", "queryId": "q", "trigger": {{"symbol": "{symbol}"}}}}'
            )
            assert (
                cli(
                    env,
                    "send-test-event",
                    server.url,
                    "--event-id",
                    f"r{n}",
                    "--body",
                    str(body),
                    cwd=tmp_path,
                ).returncode
                == 0
            )
        await eventually(lambda: _count_events(server, 4))
    finally:
        assert server.terminate() == 0
    (tmp_path / "strict.toml").write_text(STRICT)
    before = _counts(tmp_path / "runner.db")

    result = cli(env, "replay", "--since", "0", "--policy", "strict.toml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["events"], summary["unchanged"], summary["newly_denied"]) == (4, 2, 2)
    assert sorted(d["event_id"] for d in summary["differences"]) == ["r1", "r3"]

    one = cli(env, "replay", "r1", "--policy", "strict.toml", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    first, before_line, after_line = one.stdout.splitlines()
    assert first.startswith("r1: newly_denied (route no-eth")
    assert before_line == "  before: allowed notify:notify"
    assert after_line.startswith("  after:  allowed nothing")
    many = cli(env, "replay", "--since", "0", "--policy", "strict.toml", cwd=tmp_path)
    assert many.returncode == 0, many.stderr
    assert many.stdout.splitlines()[0].endswith(
        "2 unchanged, 0 changed, 2 newly denied, 0 newly allowed, 0 never decided"
    )
    assert (
        sum(
            "r1: newly_denied  before: allowed notify:notify" in line
            for line in many.stdout.splitlines()
        )
        == 1
    )
    shown = json.loads(cli(env, "events", "show", "r1", "--json", cwd=tmp_path).stdout)
    assert len(shown["runs"]) == 1
    assert [e["status"] for e in shown["effects"]] == ["done"]
    assert _counts(tmp_path / "runner.db") == before == (4, 4)


def _counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        effects = conn.execute("SELECT count(*) FROM effects").fetchone()[0]
    return runs, effects


async def _count_events(server: Server, n: int) -> bool:
    return bool(sum(line.get("event") == "job.done" for line in server.log_lines()) >= n)


def test_a_route_naming_the_llm_decider_without_a_model_stops_serve(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text('[default]\ndecider = "llm"\n')
    env = base_env(tmp_path / "x.db", RUNNER_POLICY=str(tmp_path / "policy.toml"))
    result = cli(env, "serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"autorunner: error: {tmp_path / 'policy.toml'}: route 'default' uses decider 'llm',"
        " which is not configured (set LLM_MODEL)"
    )


def test_replay_names_the_deciders_it_has_when_asked_for_another(tmp_path: Path) -> None:
    env = base_env(tmp_path / "runner.db")
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    assert server.terminate() == 0
    result = cli(env, "replay", "--since", "0", "--decider", "llm", cwd=tmp_path)
    assert result.returncode == 2  # a configuration matter
    assert (
        result.stderr.strip()
        == "autorunner: error: decider 'llm' is not available here (configured: rules)"
    )
    ok = cli(env, "replay", "--since", "0", "--decider", "rules", "--json", cwd=tmp_path)
    assert json.loads(ok.stdout)["events"] == 0


def test_policy_check_accepts_old_names_with_warnings_and_refuses_a_typo(tmp_path: Path) -> None:
    env = base_env(tmp_path / "x.db")
    (tmp_path / "old.toml").write_text(
        POLICY.replace("${title}", "${eventId}").replace('"notify"]', '"notify", "telegram"]')
    )
    checked = cli(env, "policy", "check", "old.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0].startswith("old.toml: ok, 0 route(s) and the default, policy sha256:")
    assert lines[1:] == [
        "warning: old.toml: default route: placeholder ${eventId} is now ${event_id}",
        "warning: route 'default' allows 'telegram', but no telegram adapter is configured"
        " (set TELEGRAM_BOT_TOKEN and TELEGRAM_CHATS): its actions will be denied",
    ]
    (tmp_path / "typo.toml").write_text(POLICY.replace("${title}", "${titel}"))
    typo = cli(env, "policy", "check", "typo.toml", cwd=tmp_path)
    assert typo.returncode == 2
    assert typo.stderr.startswith(
        "autorunner: error: typo.toml: default route: rules.1: actions.1.params.text:"
        " unknown placeholder ${titel}"
    )
    assert not (tmp_path / "x.db").exists()


def test_policy_test_shows_route_rule_and_verdict_of_a_body_without_running_it(
    tmp_path: Path,
) -> None:
    env = base_env(tmp_path / "x.db", HTTP_ENDPOINTS="orders=http://127.0.0.1:9/orders")
    (tmp_path / "readme.toml").write_text(readme_policy())
    (tmp_path / "body.json").write_text(
        json.dumps(
            {
                "eventType": "query.triggered",
                "eventId": "t-1",
                "queryId": "q",
                "trigger": {"symbol": "BTC", "reason": "BTC up"},
            }
        )
    )
    shown = cli(env, "policy", "test", "readme.toml", "--body", "body.json", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["route"] == "btc"
    assert result["decision"]["rationale"] == "rule 1 of route 'btc'"
    assert [a["step_id"] for a in result["verdict"]["allowed"]] == ["order"]
    assert [d["reason"] for d in result["verdict"]["denied"]] == [
        "no adapter for action 'telegram'"
    ]
    human = cli(env, "policy", "test", "readme.toml", "--body", "body.json", cwd=tmp_path).stdout
    assert "route      btc" in human
    assert "denied     tell (telegram): no adapter for action 'telegram'" in human
    assert not (tmp_path / "x.db").exists()


async def test_policy_test_of_a_stored_event_uses_what_its_run_recorded(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = base_env(tmp_path / "runner.db", RUNNER_POLICY=str(policy))
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        assert (
            cli(env, "send-test-event", server.url, "--event-id", "s-1", cwd=tmp_path).returncode
            == 0
        )
        await eventually(lambda: notified(server, "VERSION-A"))
    finally:
        assert server.terminate() == 0
    (tmp_path / "b.toml").write_text(POLICY.replace("VERSION-A", "VERSION-B"))
    shown = cli(env, "policy", "test", "b.toml", "--event", "s-1", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    [action] = json.loads(shown.stdout)["decision"]["actions"]
    assert action["params"]["text"] == "VERSION-B BTC price alert"
    assert _counts(tmp_path / "runner.db") == (1, 1)  # nothing new ran or was recorded


def test_policy_check_warns_of_a_rule_action_that_would_always_be_denied(tmp_path: Path) -> None:
    env = base_env(
        tmp_path / "x.db",
        TELEGRAM_BOT_TOKEN="t",
        TELEGRAM_CHATS="desk=1",
        HTTP_ENDPOINTS="orders=http://127.0.0.1:9/orders",
    )
    (tmp_path / "p.toml").write_text(
        """
[default]
allowed_actions = ["telegram", "http"]
[[default.rules]]
actions = [
  { step = "tell", kind = "telegram", params = { chatt = "desk", text = "hi" } },
  { step = "order", kind = "http", params = { endpoint = "orders", body = { notional_usd = -5 } } },
]
"""
    )
    checked = cli(env, "policy", "check", "p.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[1:] == [
        "warning: route 'default' rule 1 action 'tell' is always denied: telegram action has"
        " unknown param(s) 'chatt' (it reads chat, text)",
        "warning: route 'default' rule 1 action 'order' is always denied: body.notional_usd of"
        " endpoint 'orders' is -5, not a non-negative number",
    ]


def test_serve_warns_at_start_of_an_allowed_kind_without_an_adapter(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.replace('"notify"]', '"notify", "http"]'))
    env = base_env(tmp_path / "runner.db", RUNNER_POLICY=str(policy))
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    assert server.terminate() == 0
    [warning] = [line for line in server.log_lines() if line.get("event") == "policy.warning"]
    assert warning["warning"].startswith("route 'default' allows 'http', but no http adapter")
