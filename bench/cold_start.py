"""Benchmark: the Lambda handlers' cold start, in a fresh process standing in for a new execution
environment (``tests.lambda_host``), against the machine's PostgreSQL and moto's SQS server.

    .venv/bin/python -m bench.cold_start [--trials 10] [--database postgresql://…/postgres]

Per trial and handler (ingress with a signed webhook, worker with that webhook's SQS record):
the interpreter's start and ``import autorunner.serverless`` (init), the first invocation
(settings, PostgreSQL pool, SQS client and runtime built, then the request), and a second,
warm invocation. Lambda's own share (fetching the image, starting the sandbox) is not here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

import orjson
import psycopg
from tests.acceptance.test_serverless import http_event, sqs_record
from tests.helpers import canonical, signed
from tests.services import MotoSqs

from bench.calibrate import python_loop_seconds

SECRET = "bench-secret"


def trial(env: dict[str, str], handler: str, event: dict[str, object]) -> tuple[float, ...]:
    started = time.perf_counter()
    host = subprocess.Popen(
        [sys.executable, "-m", "tests.lambda_host"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert host.stdin is not None
    assert host.stdout is not None
    try:
        ready = orjson.loads(host.stdout.readline())
        init = time.perf_counter() - started
        replies = []
        for _ in range(2):
            host.stdin.write(orjson.dumps({"handler": handler, "event": event}) + b"\n")
            host.stdin.flush()
            replies.append(orjson.loads(host.stdout.readline()))
        assert all("error" not in reply for reply in replies), replies
        return init, ready["import_seconds"], replies[0]["seconds"], replies[1]["seconds"]
    finally:
        host.kill()
        host.wait()
        host.stdin.close()
        host.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    moto = MotoSqs()
    moto.start()
    try:
        queue_url = moto.create_queue("cold")
        env = {
            **os.environ,
            **moto.environment,
            "RUNNER_MODE": "cloud",
            "QUEUE_URL": queue_url,
            "DATABASE_URL": args.database.rsplit("/", 1)[0] + f"/{name}",
            "AUTO_SECRET": SECRET,
            "LOG_LEVEL": "warning",
        }
        sqs = moto.client()
        figures: dict[str, list[tuple[float, ...]]] = {"ingress": [], "worker": []}
        for n in range(args.trials):
            delivery = signed(canonical(f"cold-{n}"), secret=SECRET)
            figures["ingress"].append(
                trial(env, "ingress", http_event(delivery.body, delivery.headers))
            )
            [message] = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=60)["Messages"]
            figures["worker"].append(
                trial(env, "worker", {"Records": [sqs_record(message, queue_url)]})
            )
    finally:
        moto.close()
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())
    print(f"CPU yardstick {python_loop_seconds():.2f}s; {args.trials} trials; median (max) ms")
    print("handler  start+import  of which import  first invocation  warm invocation")
    for handler, rows in figures.items():
        cells = [
            f"{statistics.median(column) * 1000:,.0f} ({max(column) * 1000:,.0f})"
            for column in zip(*rows, strict=True)
        ]
        print(f"{handler:8} " + "  ".join(f"{cell:>16}" for cell in cells))


if __name__ == "__main__":
    main()
