"""A new user's first real setup, from outside: the README's policy, the example query created in
a simulated Auto, a fake internal API and Telegram. A trigger delivered by webhook and stream,
and one fired while the stream is down (recovered only by polling), both take the README's
``btc`` route and act: the decision does not depend on the channel that won."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx2

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.fake_api import IdempotentApi
from tests.fake_http import serving
from tests.fake_telegram import TelegramBot
from tests.helpers import eventually, readme_policy
from tests.services import free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "btc-query.json"
SECRET = "sim-webhook-secret"


def events(db: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT event_id, channel, route FROM events WHERE status = 'done' ORDER BY received_at"
        ).fetchall()


async def test_a_polled_trigger_is_decided_like_a_delivered_one_by_the_readme_policy(
    tmp_path: Path, simulator: str
) -> None:
    runner_port = free_port()
    query = json.loads(EXAMPLE.read_text())
    query["query"]["actions"][0]["params"] = {
        "url": f"http://127.0.0.1:{runner_port}/webhooks/auto",
        "signingSecret": SECRET,
    }
    (tmp_path / "query.json").write_text(json.dumps(query))
    (tmp_path / "policy.toml").write_text(readme_policy())
    api, bot = IdempotentApi(fail_every=1000), TelegramBot()
    db = tmp_path / "runner.db"
    async with serving(api) as api_base, serving(bot) as bot_base:
        env = base_env(
            db,
            PORT=str(runner_port),
            AUTO_SECRET=SECRET,
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            ELFA_BASE_URL=f"{simulator}/v2/auto",
            ELFA_API_KEY="sim-key",
            ELFA_HMAC_SECRET="sim-hmac",
            ELFA_REQUESTS_PER_MINUTE="6000",
            SSE_KEEPALIVE_SECONDS="1",
            HTTP_ENDPOINTS=f"orders={api_base}/orders",
            TELEGRAM_BOT_TOKEN="t0k",
            TELEGRAM_CHATS="desk=1",
            TELEGRAM_API_URL=bot_base,
            TELEGRAM_CHAT_INTERVAL="0",
        )
        made = cli(env, "queries", "create", "query.json", "--json", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        query_id = json.loads(made.stdout)["query_id"]
        env["STREAM_QUERIES"] = query_id
        server: Server = start_server(env, tmp_path, tmp_path / "runner.log")
        try:
            async with httpx2.AsyncClient(base_url=simulator, timeout=10) as sim:
                await eventually(lambda: _streams_open(sim))
                fired = cli(
                    env,
                    "simulate",
                    "trigger",
                    query_id,
                    "--symbol",
                    "BTC",
                    "--url",
                    simulator,
                    cwd=tmp_path,
                )
                assert fired.returncode == 0, fired.stderr
                await eventually(lambda: _done(db, 1))
                await sim.post("/_sim/drop-streams", json={"refuse_for": 2})
                # Fired at once while the stream is refused, by stream only: only the poll after
                # the reconnect can find it.
                missed = await sim.post(
                    "/_sim/trigger", json={"queryId": query_id, "channels": ["sse"]}
                )
                assert missed.status_code == 200
                await eventually(lambda: _done(db, 2), within=30)
        finally:
            assert server.terminate() == 0
    stored = events(db)
    assert [channel for _, channel, _ in stored][1] == "poll"
    assert [route for *_, route in stored] == ["btc", "btc"]
    assert sorted(api.performed) == sorted(f"{event_id}:order" for event_id, _, _ in stored)
    assert bot.messages == ["BTC: BTC above 100k"] * 2


async def _streams_open(sim: httpx2.AsyncClient) -> bool:
    return bool((await sim.get("/_sim/stats")).json()["open_streams"] >= 1)


async def _done(db: Path, n: int) -> bool:
    return len(events(db)) >= n
