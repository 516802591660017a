"""The whole Auto integration against the simulator as a separate process.

1,000 triggers delivered by webhook and SSE at once, duplicated and reordered webhooks, the stream
dropped six times (and refused for a while each time) with triggers fired while it is down that
only polling can recover: exactly 1,000 runs, none lost, none doubled.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import httpx2

from tests.acceptance.runner import Server, autorunner_exe, base_env, start_server
from tests.helpers import eventually
from tests.services import free_port

TOTAL = 1000
BATCH = 50
DROPS = 6
SECRET = "sim-webhook-secret"


def runs(db: Path) -> list[tuple[str, str | None, str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT e.event_id, e.execution_id, e.channel, (SELECT count(*) FROM runs r WHERE r.event_id = e.event_id)"
            " FROM events e WHERE e.status = 'done'"
        ).fetchall()


async def test_a_thousand_triggers_over_webhook_and_a_dropping_stream_make_exactly_a_thousand_runs(
    tmp_path: Path, simulator: str
) -> None:
    runner_port = free_port()
    async with httpx2.AsyncClient(base_url=simulator, timeout=10) as sim:
        created = await sim.post(
            "/_sim/faults", json={"duplicate_webhooks": 0.2, "reorder_webhooks": True}
        )
        assert created.status_code == 200
        # Created through the runner's own client, so the request signature is checked for real.
        query_file = tmp_path / "query.json"
        query_file.write_text(
            '{"title": "BTC probe", "query": {"conditions": {"AND": []}, "actions": [{"stepId": "s1", "type": "webhook",'
            f' "params": {{"url": "http://127.0.0.1:{runner_port}/webhooks/auto"}}}}]}}}}'
        )
        env = base_env(
            tmp_path / "runner.db",
            PORT=str(runner_port),
            AUTO_SECRET=SECRET,
            ELFA_BASE_URL=f"{simulator}/v2/auto",
            ELFA_API_KEY="sim-key",
            ELFA_HMAC_SECRET="sim-hmac",
            ELFA_REQUESTS_PER_MINUTE="6000",
            SSE_KEEPALIVE_SECONDS="1",
            RECONCILE_INTERVAL="2",
            WORKER_CONCURRENCY="64",
        )
        made = await asyncio.to_thread(
            subprocess.run,
            [autorunner_exe(), "queries", "create", str(query_file), "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        query_id = json.loads(made.stdout)["query_id"]
        env["STREAM_QUERIES"] = query_id
        runner: Server = start_server(env, tmp_path, tmp_path / "runner.log")
        try:
            await eventually(lambda: _streams_open(sim, 1))
            poll_only = 0
            fired = 0
            while fired < TOTAL:
                if (
                    fired
                    and fired % (TOTAL // DROPS + 1) < BATCH
                    and (await sim.get("/_sim/stats")).json()["drops"] < DROPS
                ):
                    await sim.post("/_sim/drop-streams", json={"refuse_for": 0.5})
                    # Fired while the stream is down and without a webhook: only polling finds these.
                    await sim.post(
                        "/_sim/trigger",
                        json={"queryId": query_id, "count": 10, "channels": ["sse"]},
                    )
                    fired += 10
                    poll_only += 10
                    continue
                count = min(BATCH, TOTAL - fired)
                reply = await sim.post("/_sim/trigger", json={"queryId": query_id, "count": count})
                assert reply.status_code == 200
                fired += count
                await asyncio.sleep(0.05)
            stats = (await sim.get("/_sim/stats")).json()
            assert stats["triggers"] == TOTAL
            assert stats["drops"] >= 5

            db = tmp_path / "runner.db"

            async def all_done() -> bool:
                return len(runs(db)) >= TOTAL

            await eventually(all_done, within=120)
            await asyncio.sleep(1)  # late duplicates still in flight must not add runs
            done = runs(db)
        finally:
            assert runner.terminate() == 0

        assert len(done) == TOTAL
        assert len({execution for _, execution, _, _ in done}) == TOTAL
        assert all(count == 1 for *_, count in done)
        channels = Counter(channel for _, _, channel, _ in done)
        assert channels["poll"] >= poll_only > 0
        with sqlite3.connect(db) as conn:
            assert conn.execute(
                "SELECT count(*), count(DISTINCT effect_key) FROM effects WHERE status = 'done'"
            ).fetchone() == (TOTAL, TOTAL)
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (TOTAL,)
        notified = Counter(
            line["effect_key"]
            for line in runner.log_lines()
            if line.get("event") == "effect.notify"
        )
        assert len(notified) == TOTAL
        assert max(notified.values()) == 1


async def _streams_open(sim: httpx2.AsyncClient, count: int) -> bool:
    return bool((await sim.get("/_sim/stats")).json()["open_streams"] >= count)
