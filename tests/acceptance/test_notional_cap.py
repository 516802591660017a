"""The README's policy run as written, against a fake internal API: the cap holds wherever the
amount is written, and replay under a stricter cap names the orders it would now deny."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.fake_api import IdempotentApi
from tests.fake_http import serving
from tests.helpers import eventually, readme_policy


async def run_three_btc_triggers(tmp_path: Path, policy: str, api: IdempotentApi) -> dict[str, str]:
    """Serve ``policy``, send three BTC triggers, wait until all are finished; the env used."""
    (tmp_path / "policy.toml").write_text(policy)
    async with serving(api) as base:
        env = base_env(
            tmp_path / "runner.db",
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            HTTP_ENDPOINTS=f"orders={base}/orders",
        )
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            for n in range(3):
                sent = cli(
                    env, "send-test-event", server.url, "--event-id", f"btc-{n}", cwd=tmp_path
                )
                assert sent.returncode == 0, sent.stderr
            await eventually(lambda: finished(server, 3))
        finally:
            assert server.terminate() == 0
    return env


async def finished(server: Server, n: int) -> bool:
    return bool(sum(line.get("event") == "job.done" for line in server.log_lines()) >= n)


async def test_the_readme_order_reaches_the_api_and_replay_under_a_stricter_cap_denies_it(
    tmp_path: Path,
) -> None:
    api = IdempotentApi(fail_every=1000)
    env = await run_three_btc_triggers(tmp_path, readme_policy(), api)
    assert sorted(api.performed) == [f"btc-{n}:order" for n in range(3)]

    (tmp_path / "strict.toml").write_text(
        readme_policy().replace("max_notional_usd = 500", "max_notional_usd = 50")
    )
    result = cli(env, "replay", "--since", "0", "--policy", "strict.toml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["events"], summary["newly_denied"]) == (3, 3)
    for difference in summary["differences"]:
        [reason] = [
            d["reason"] for d in difference["after"]["denied"] if d["action"]["kind"] == "http"
        ]
        assert reason == "notional 100 USD exceeds the route's cap of 50 USD"


async def test_an_amount_outside_the_canonical_place_is_denied_and_never_sent(
    tmp_path: Path,
) -> None:
    misplaced = readme_policy().replace("notional_usd = 100 }", "amount_usd = 100000 }")
    assert misplaced != readme_policy()
    api = IdempotentApi(fail_every=1000)
    env = await run_three_btc_triggers(tmp_path, misplaced, api)
    assert api.calls == {}
    shown = json.loads(cli(env, "events", "show", "btc-0", "--json", cwd=tmp_path).stdout)
    [denied] = [d for d in shown["runs"][-1]["verdict"]["denied"] if d["action"]["kind"] == "http"]
    assert denied["reason"] == (
        "notional cannot be determined (endpoint 'orders' carries its amount at body.notional_usd,"
        " which is missing) and the route caps it at 500 USD"
    )
