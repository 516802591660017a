"""Fixtures for the acceptance tests: the simulator as a process of its own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.acceptance.runner import autorunner_exe, base_env
from tests.services import free_port


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = base_env(tmp_path / "unused.db", SIM_API_KEY="sim-key", SIM_HMAC_SECRET="sim-hmac")
    with (tmp_path / "sim.log").open("ab") as log:
        process = subprocess.Popen(
            [autorunner_exe(), "simulate", "run", "--port", str(port), "--keepalive", "1"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=log,
        )
    try:
        with httpx2.Client() as client:
            for _ in range(200):
                try:
                    client.get(f"http://127.0.0.1:{port}/_sim/stats")
                    break
                except httpx2.TransportError:
                    time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
