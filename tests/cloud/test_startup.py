"""Starting cloud processes: a service that never comes is one clear line and a non-zero exit;
a service that comes late is waited for, without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest

from tests.acceptance.runner import base_env, cli, start_server
from tests.backends import postgres_schema
from tests.helpers import eventually
from tests.services import PrivateRedis, free_port


def cloud_env(tmp_path: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return base_env(
        tmp_path / "unused.db",
        RUNNER_MODE="cloud",
        QUEUE_URL=redis_url,
        DATABASE_URL=database_url,
        QUEUE_NAME=f"startup-{tmp_path.name}",
        **extra,
    )


async def test_a_queue_that_never_answers_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    async with postgres_schema() as database:
        env = cloud_env(tmp_path, database, f"redis://127.0.0.1:{port}/0", STARTUP_WAIT="0.5")
        result = await asyncio.to_thread(cli, env, "worker", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"autorunner: error: cannot reach Redis at 127.0.0.1:{port}")


@pytest.mark.timeout(120)
async def test_a_worker_started_before_its_queue_waits_and_then_runs(tmp_path: Path) -> None:
    redis = PrivateRedis()
    async with postgres_schema() as database:
        env = cloud_env(tmp_path, database, redis.url, STARTUP_WAIT="60")
        starting = asyncio.create_task(
            asyncio.to_thread(start_server, env, tmp_path, tmp_path / "w.log", command="worker")
        )

        async def waiting_logged() -> bool:
            text = (tmp_path / "w.log").read_text() if (tmp_path / "w.log").exists() else ""
            return '"startup.waiting"' in text

        await eventually(waiting_logged, within=30, interval=0.05)
        redis.start()
        try:
            worker = await asyncio.wait_for(starting, timeout=60)
            base = worker.url.removesuffix("/webhooks/auto")
            async with httpx2.AsyncClient(timeout=10) as client:
                ready = (await client.get(f"{base}/readyz")).json()
            assert (ready["ok"], ready["queue"], ready["role"]) == (True, "ok", "worker")
            assert worker.terminate() == 0
        finally:
            redis.close()
