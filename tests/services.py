"""Private servers for tests: Redis and PostgreSQL for tests that stop and restart them (never
the shared ones), a JetStream ``nats-server`` and moto's SQS-speaking server: real processes on
free loopback ports, in throw-away directories."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

_FOUND: dict[str, str | None] = {}


def need(service: str) -> None:
    """Skip the calling test, with one line naming what is missing, when ``service`` is not
    here: ``postgres`` or ``redis`` (the shared servers the tests use), ``redis-server``,
    ``postgres-binaries``, ``nats-server`` or ``moto`` (to start private ones), ``chromium``. With ``CI=true`` a missing service fails the
    test instead: CI must run everything."""
    if service not in _FOUND:
        _FOUND[service] = _missing(service)
    reason = _FOUND[service]
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true refuses to skip)", pytrace=False)
    pytest.skip(reason)


def _missing(service: str) -> str | None:
    """Why ``service`` cannot be used here, or ``None`` when it can."""
    from tests.backends import DATABASE_URL, REDIS_URL  # noqa: PLC0415 - avoids an import cycle

    if service in ("postgres", "redis"):
        url = urlsplit(DATABASE_URL if service == "postgres" else REDIS_URL)
        host, port = (
            url.hostname or "127.0.0.1",
            url.port or (5432 if service == "postgres" else 6379),
        )
        try:
            with socket.create_connection((host, port), timeout=1):
                return None
        except OSError:
            variable = "TEST_DATABASE_URL" if service == "postgres" else "TEST_REDIS_URL"
            name = "PostgreSQL" if service == "postgres" else "Redis"
            return f"needs {name}: nothing answers at {host}:{port} (start it, or set {variable})"
    if service == "postgres-binaries":
        missing = [name for name in ("initdb", "pg_ctl") if not Path(_pg_bin(name)).exists()]
        if missing:
            return f"needs PostgreSQL's {' and '.join(missing)} (not installed)"
        if os.geteuid() == 0 and not shutil.which("runuser"):
            return "needs runuser to start PostgreSQL as the postgres user"
        return None
    binaries = {
        "redis-server": (("redis-server",), "needs the redis-server binary (not on PATH)"),
        "nats-server": (("nats-server",), "needs the nats-server binary (not on PATH)"),
        "moto": (("moto_server",), "needs moto's server (pip install moto[server])"),
        "chromium": (
            ("chromium", "chromedriver"),
            "needs Debian's chromium and chromium-driver (apt-get install)",
        ),
    }
    if service in binaries:
        needed, reason = binaries[service]
        return None if all(shutil.which(binary) for binary in needed) else reason
    raise ValueError(f"unknown service {service!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, *, within: float, process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {within}s")


class _ServerProcess:
    """A server binary on its own loopback port, with a throw-away directory: ``stop`` kills it
    (what it kept only in memory is gone, as after a crash), ``close`` also removes the
    directory. A subclass names its ``service`` (``need``) and its ``command``."""

    service = ""

    def __init__(self) -> None:
        need(self.service)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"autorunner-{self.service}-"))
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self._process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, within=30, process=self._process)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis(_ServerProcess):
    """``redis-server`` on its own port, keeping nothing on disk (like the shared one)."""

    service = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
        ]  # fmt: skip


class PrivatePostgres:
    """A PostgreSQL cluster made by ``initdb`` in a temporary directory (as the ``postgres`` user
    when the tests run as root, since PostgreSQL refuses to run as root), trust auth."""

    def __init__(self) -> None:
        need("postgres-binaries")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="autorunner-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, user="postgres", group="postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [*(["runuser", "-u", "postgres", "--"] if self._as_postgres else []), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.dir / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        _wait_for_port(self.port, within=30, process=None)

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or name]
    return found[-1]


class PrivateNats(_ServerProcess):
    """``nats-server`` with JetStream on its own port, its store in the directory (a restart
    keeps what it had written)."""

    service = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            shutil.which("nats-server") or "nats-server", "-js", "-a", "127.0.0.1",
            "-p", str(self.port), "-sd", str(self.dir),
        ]  # fmt: skip


class MotoSqs(_ServerProcess):
    """moto's server: a real HTTP endpoint speaking the SQS protocol (state in memory)."""

    service = "moto"
    REGION = "us-east-1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.endpoint

    def client(self) -> Any:
        """A plain (boto3) SQS client of its own, as a deployment's tooling would use."""
        import boto3  # noqa: PLC0415 - moto brings it; only these tests use it

        return boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name=self.REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_queue(self, name: str) -> str:
        """Make a queue (as a deployment would); its URL."""
        return str(self.client().create_queue(QueueName=name)["QueueUrl"])

    @property
    def environment(self) -> dict[str, str]:
        """What a process needs to talk to it as it would to AWS."""
        return {
            "AWS_ENDPOINT_URL_SQS": self.endpoint,
            "AWS_REGION": self.REGION,
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def command(self) -> list[str]:
        return [
            shutil.which("moto_server") or "moto_server",
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
