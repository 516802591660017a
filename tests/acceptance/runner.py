"""Run the installed ``autorunner`` command as a user would: subprocesses, real HTTP, real files."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET = "acceptance-secret"


def autorunner_exe() -> str:
    found = shutil.which("autorunner", path=str(Path(sys.executable).parent)) or shutil.which(
        "autorunner"
    )
    assert found, "the autorunner console script is not installed"
    return found


def base_env(db: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AUTO_", "QUEUE_", "DATABASE_"))
    }
    env.update(
        QUEUE_URL=f"sqlite:///{db}",
        AUTO_SECRET=SECRET,
        PORT="0",
        LOG_FORMAT="json",
        LEASE_SECONDS="1",
        SWEEP_INTERVAL="0.2",
        SWEEP_AFTER="0.5",
        SHUTDOWN_GRACE="2",
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [autorunner_exe(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Server:
    """A running ``autorunner serve``; its log is a JSON-lines file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/auto"

    def log_lines(self) -> list[dict[str, Any]]:
        text = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in text if line.startswith("{")]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def start_server(
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    *args: str,
    command: str = "serve",
    max_files: int | None = None,
) -> Server:
    """Start ``autorunner serve`` (or ``ingress``/``worker``) and wait until it listens;
    ``max_files`` sets its descriptor limit (soft and hard) as ``ulimit -n`` would."""

    def limit() -> None:
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    with log_path.open("ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [autorunner_exe(), command, *args],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=log,
            preexec_fn=limit,  # noqa: PLW1509 - only a setrlimit, before exec
        )
    server = Server(process=process, log_path=log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        started = [
            line["port"] for line in server.log_lines() if line.get("event") == "serve.started"
        ]
        # or a console line (``LOG_FORMAT=console``): ``12:00:00  serve.started  … port=N …``
        started += re.findall(r"serve\.started .*port=(\d+)", log_path.read_text())
        if started and process.poll() is None:
            server.port = int(started[-1])
            return server
        if process.poll() is not None:
            raise AssertionError(
                f"{command} exited with {process.returncode}: {log_path.read_text()}"
            )
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"{command} did not start: {log_path.read_text()}")
