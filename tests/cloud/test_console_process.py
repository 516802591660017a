"""``autorunner console`` in cloud mode: the console as a process of its own, on the deployment's
PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.acceptance.runner import base_env, start_server
from tests.backends import REDIS_URL, postgres_schema
from tests.services import need


async def test_the_console_process_serves_the_deployments_events(tmp_path: Path) -> None:
    need("redis")
    async with postgres_schema() as database:
        env = base_env(
            tmp_path / "unused.db",
            RUNNER_MODE="cloud",
            QUEUE_URL=REDIS_URL,
            DATABASE_URL=database,
            CONSOLE_TOKEN="cloud-console-token-0123",
        )
        console = start_server(env, tmp_path, tmp_path / "console.log", command="console")
        try:
            base = f"http://127.0.0.1:{console.port}"
            login = httpx2.get(f"{base}/console/login", timeout=10)
            webhook = httpx2.post(f"{base}/webhooks/auto", content=b"{}", timeout=10)
        finally:
            assert console.terminate() == 0
    assert login.status_code == 200
    assert "Console token" in login.text
    assert webhook.status_code == 404  # a console process takes no webhooks
