"""The model's spend seen from outside: ``autorunner serve`` deciding with a priced fake model
under a route budget, its spend on ``/metrics``, in ``autorunner status`` and on the console's
overview; a start with a malformed price list is one line and a non-zero exit."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx2

from tests.acceptance.runner import base_env, cli, start_server
from tests.acceptance.test_console import OPERATOR, logged_in
from tests.fake_http import serving
from tests.fake_llm import FakeModel
from tests.helpers import eventually

POLICY = """
[default]
decider = "llm"
allowed_actions = ["notify"]
context = []
llm_budget = { per_decision_usd = 0.5, per_day_usd = 10 }
"""
ANSWER = {
    "actions": [{"step_id": "n", "kind": "notify", "params": {"text": "hi"}}],
    "rationale": "r",
}


async def test_spend_is_on_metrics_in_status_and_on_the_overview(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    model = FakeModel(lambda event_id, n: ANSWER)
    async with serving(model) as model_base:
        env = base_env(
            tmp_path / "runner.db",
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            LLM_MODEL="fake-1",
            LLM_BASE_URL=f"{model_base}/v1",
            LLM_PRICES="fake-1=1000/1000",  # one call (150 tokens): $0.15
            CONSOLE_TOKEN=OPERATOR,
        )
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        try:
            sent = cli(env, "send-test-event", server.url, "--event-id", "spend-1", cwd=tmp_path)
            assert sent.returncode == 0, sent.stderr
            await eventually(
                lambda: _true(any(e.get("event") == "job.done" for e in server.log_lines())),
                within=20,
            )
            metrics = httpx2.get(server.url.replace("/webhooks/auto", "/metrics")).text
            client, _ = logged_in(server, OPERATOR)
            with contextlib.closing(client):
                overview = client.get("/").text
        finally:
            assert server.terminate() == 0
    assert 'autorunner_llm_spend_usd_total{route="default"} 0.15' in metrics
    assert '<th scope="row">route:default</th><td>0.1500 USD</td><td>150</td>' in overview
    status = cli(env, "status", cwd=tmp_path)
    assert "llm spend    route:default today: 0.1500 USD, 150 tokens" in status.stdout
    as_json = json.loads(cli(env, "status", "--json", cwd=tmp_path).stdout)
    spend = {s["scope"]: s for s in as_json["llm_spend_today"]}
    assert (spend["global"]["spent_usd"], spend["global"]["reserved_usd"]) == (0.15, 0.0)


def test_a_malformed_price_list_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = base_env(
        tmp_path / "runner.db",
        RUNNER_POLICY=str(tmp_path / "policy.toml"),
        LLM_MODEL="fake-1",
        LLM_BASE_URL="http://127.0.0.1:9/v1",
        LLM_PRICES="fake-1=cheap",
    )
    started = cli(env, "serve", cwd=tmp_path)
    assert started.returncode != 0
    [line] = started.stderr.strip().splitlines()
    assert "LLM_PRICES: 'fake-1=cheap' is not model=input/output" in line


async def _true(value: bool) -> bool:
    return value
