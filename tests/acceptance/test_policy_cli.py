"""The policy file as an operator meets it: a bad file stops serve; SIGHUP swaps in a new one."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.helpers import eventually

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
