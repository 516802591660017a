"""``autorunner status`` in cloud mode reads PostgreSQL and Redis and judges the lag."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg

from autorunner.store.postgres import PostgresStore
from tests.acceptance.runner import base_env, cli
from tests.backends import REDIS_URL, postgres_schema, redis_queue
from tests.helpers import make_event, raw_delivery
from tests.services import need


async def test_status_reports_queue_lag_against_the_threshold(tmp_path: Path) -> None:
    async with postgres_schema() as url, redis_queue() as queue:
        store = await PostgresStore.open(url)
        try:
            for n in range(3):
                await store.insert_event(make_event(f"s-{n}"), raw_delivery())
                await queue.enqueue(f"s-{n}")
        finally:
            await store.close()
        env = base_env(
            tmp_path / "unused.db",
            RUNNER_MODE="cloud",
            QUEUE_URL=REDIS_URL,
            DATABASE_URL=url,
            QUEUE_NAME=queue.name,
            LAG_THRESHOLD="0.001",
        )
        result = await asyncio.to_thread(cli, env, "status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["queue_depth"], status["ready"], status["in_flight"]) == (3, 3, 0)
    assert status["events"] == {"pending": 3}
    assert status["oldest_pending_age_seconds"] > 0.001
    assert status["lagging"] is True


async def test_status_never_creates_the_schema_of_an_empty_database(tmp_path: Path) -> None:
    need("redis")
    async with postgres_schema() as url:
        env = base_env(
            tmp_path / "unused.db", RUNNER_MODE="cloud", QUEUE_URL=REDIS_URL, DATABASE_URL=url
        )
        result = await asyncio.to_thread(cli, env, "status", cwd=tmp_path)
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT to_regclass('events') IS NULL")
            untouched = await cur.fetchone()
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "autorunner: error: no autorunner schema in this database yet: start `autorunner ingress`"
    )
    assert untouched == (True,)
