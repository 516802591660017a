"""The serverless pattern from outside: the Lambda handlers invoked, in a process standing in for
the Lambda runtime (``tests.lambda_host``), with the documented event shapes — HTTP API payload
2.0 requests and SQS batches — against the tests' PostgreSQL, moto's SQS-speaking server and a
fake internal API over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.acceptance.runner import SECRET, base_env, cli
from tests.backends import postgres_schema
from tests.cloud.harness import POLICY, FakeApi, fake_api
from tests.fake_http import serving
from tests.fake_telegram import ApproversBot
from tests.helpers import canonical, signed
from tests.services import MotoSqs, PrivatePostgres, free_port

pytestmark = pytest.mark.timeout(180)


@dataclass
class Host:
    """One execution environment: handlers invoked one at a time, as Lambda invokes them."""

    process: subprocess.Popen[bytes]

    def invoke(self, handler: str, event: dict[str, Any]) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(orjson.dumps({"handler": handler, "event": event}) + b"\n")
        self.process.stdin.flush()
        reply = orjson.loads(self.process.stdout.readline())
        assert "error" not in reply, reply["error"]
        return reply["result"]


@dataclass
class Deployment:
    env: dict[str, str]
    queue_url: str
    database_url: str
    api: FakeApi
    sqs: Any

    @contextlib.contextmanager
    def host(self) -> Iterator[Host]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.lambda_host"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            assert orjson.loads(process.stdout.readline())["ready"] is True
            yield Host(process)
        finally:
            # End of input ends the host, as the end of an execution environment would (and
            # lets coverage write what it measured); kill it only if it does not stop.
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()

    def receive(self, count: int, *, wait: int = 0) -> list[dict[str, Any]]:
        """Receive up to ``count`` messages as Lambda's poller does (long-polling up to
        ``wait`` seconds for the first); SQS event records."""
        records: list[dict[str, Any]] = []
        while len(records) < count:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, count - len(records)),
                VisibilityTimeout=60,
                WaitTimeSeconds=0 if records else wait,
                MessageSystemAttributeNames=["All"],
            )
            got = answer.get("Messages", [])
            if not got:
                break
            records += [sqs_record(message, self.queue_url) for message in got]
        return records

    def count(self, query: str) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query.encode()).fetchone()
            return int(row[0]) if row else 0


def sqs_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    """The record Lambda hands an SQS-triggered function for ``message``."""
    account, name = queue_url.rstrip("/").split("/")[-2:]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{MotoSqs.REGION}:{account}:{name}",
        "awsRegion": MotoSqs.REGION,
    }


def http_event(
    body: bytes,
    headers: dict[str, str],
    *,
    base64_body: bool = False,
    path: str = "/webhooks/auto",
    method: str = "POST",
) -> dict[str, Any]:
    """An HTTP API payload 2.0 (or Function URL) request, as API Gateway hands it on."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {**headers, "content-length": str(len(body)), "host": "example.lambda-url"},
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Elfa-Auto",
            },
            "requestId": uuid.uuid4().hex,
            "stage": "$default",
        },
        "body": base64.b64encode(body).decode() if base64_body else body.decode(),
        "isBase64Encoded": base64_body,
    }


def deploy(sqs_server: MotoSqs, tmp_path: Path, database_url: str, api: FakeApi) -> Deployment:
    """The functions' configuration: one SQS queue, the store at ``database_url``."""
    (tmp_path / "policy.toml").write_text(POLICY)
    queue_url = sqs_server.create_queue(f"jobs-{uuid.uuid4().hex[:8]}")
    env = base_env(
        tmp_path / "unused.db",
        RUNNER_MODE="cloud",
        QUEUE_URL=queue_url,
        DATABASE_URL=database_url,
        RUNNER_POLICY=str(tmp_path / "policy.toml"),
        HTTP_ENDPOINTS=f"orders=http://127.0.0.1:{api.port}/orders",
        RETRY_BASE_DELAY="1",
        RETRY_MAX_DELAY="1",
        STORE_TIMEOUT="2",
        **sqs_server.environment,
    )
    sqs = sqs_server.client()
    return Deployment(env=env, queue_url=queue_url, database_url=database_url, api=api, sqs=sqs)


@pytest.fixture
async def deployment(sqs_server: MotoSqs, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with postgres_schema() as database_url:
        with fake_api(tmp_path) as api:
            yield deploy(sqs_server, tmp_path, database_url, api)


def webhook(event_id: str, **options: Any) -> dict[str, Any]:
    delivery = signed(canonical(event_id), secret=SECRET)
    return http_event(delivery.body, delivery.headers, **options)


def test_the_http_function_admits_a_signed_webhook_into_postgresql_and_sqs(
    deployment: Deployment,
) -> None:
    with deployment.host() as host:
        accepted = host.invoke("ingress", webhook("lx-1"))
        again = host.invoke("ingress", webhook("lx-1"))
    assert accepted["statusCode"] == 202
    assert orjson.loads(accepted["body"]) == {"accepted": True, "eventId": "lx-1"}
    assert again["statusCode"] == 200
    assert orjson.loads(again["body"])["duplicate"] is True
    assert deployment.count("SELECT count(*) FROM events WHERE event_id = 'lx-1'") == 1
    assert [r["body"] for r in deployment.receive(10)] == ["lx-1"]


def test_a_base64_encoded_body_is_verified_over_its_decoded_bytes(deployment: Deployment) -> None:
    delivery = signed(canonical("lx-b64"), secret=SECRET)
    tampered = signed(canonical("lx-b64-t"), secret=SECRET)
    tampered.body = tampered.body.replace(b"BTC", b"ETH")
    with deployment.host() as host:
        good = host.invoke("ingress", http_event(delivery.body, delivery.headers, base64_body=True))
        bad = host.invoke("ingress", http_event(tampered.body, tampered.headers, base64_body=True))
        garbage = http_event(delivery.body, delivery.headers)
        garbage["isBase64Encoded"] = True
        garbage["body"] = "not base64!"
        broken = host.invoke("ingress", garbage)
    assert good["statusCode"] == 202
    assert bad["statusCode"] == 401
    assert orjson.loads(bad["body"])["error"] == "bad_signature"
    assert broken["statusCode"] == 400
    assert deployment.count("SELECT count(*) FROM events") == 1


def test_the_http_function_answers_503_while_postgresql_is_down_and_recovers(
    sqs_server: MotoSqs, tmp_path: Path
) -> None:
    postgres = PrivatePostgres()
    try:
        postgres.init()
        postgres.start()
        with (
            fake_api(tmp_path) as api,
            deploy(sqs_server, tmp_path, postgres.url, api).host() as host,
        ):
            before = host.invoke("ingress", webhook("lx-pg-1"))
            postgres.stop()
            during = host.invoke("ingress", webhook("lx-pg-2"))
            postgres.start()
            after = host.invoke("ingress", webhook("lx-pg-2"))
    finally:
        postgres.close()
    assert before["statusCode"] == 202
    assert during["statusCode"] == 503
    assert during["headers"]["retry-after"] == "5"
    assert after["statusCode"] == 202


def test_the_http_function_refuses_as_the_route_does(deployment: Deployment) -> None:
    delivery = signed(canonical("lx-r"), secret="not-the-secret")
    big = signed({**canonical("lx-big"), "pad": "x" * 70_000}, secret=SECRET)
    with deployment.host() as host:
        unsigned = host.invoke("ingress", http_event(delivery.body, delivery.headers))
        too_big = host.invoke("ingress", http_event(big.body, big.headers))
        health = host.invoke("ingress", http_event(b"", {}, path="/healthz", method="GET"))
    assert unsigned["statusCode"] == 401
    assert too_big["statusCode"] == 413
    assert health["statusCode"] == 200
    assert deployment.count("SELECT count(*) FROM events") == 0
    # The first invocation's refusal reached the overview's tallies; the next two came within
    # the same TALLY_INTERVAL, so they wait for a later invocation (one write per interval).
    refused = "SELECT coalesce(sum(count), 0) FROM tallies WHERE name LIKE 'refused:%'"
    assert deployment.count(refused) == 1


def test_the_sqs_function_reports_only_the_failed_record_and_a_redelivery_performs_nothing_twice(
    deployment: Deployment,
) -> None:
    ids = [f"lx-w{n:02d}" for n in range(10)]
    with deployment.host() as host:
        for event_id in ids:
            assert host.invoke("ingress", webhook(event_id))["statusCode"] == 202
        records = deployment.receive(10)
        assert sorted(r["body"] for r in records) == ids
        first = host.invoke("worker", {"Records": records})
        done_after_first = deployment.count("SELECT count(*) FROM events WHERE status = 'done'")
        # Lambda delivers the same batch again (a timeout, a lost response).
        again = host.invoke("worker", {"Records": records})
    counts = deployment.api.counts()
    # The fake API refuses the first call of every tenth key once (503): that record, and only
    # it, is reported for redelivery; the other nine ran once.
    assert len(first["batchItemFailures"]) == 1
    assert done_after_first == 9
    # Again: the nine are settled (nothing runs), the refused one runs its retry and completes.
    assert again == {"batchItemFailures": []}
    assert deployment.count("SELECT count(*) FROM events WHERE status = 'done'") == 10
    assert len(counts["performed"]) == 10
    assert set(counts["performed"].values()) == {1}


def test_a_retried_record_comes_back_at_its_delay_and_completes(deployment: Deployment) -> None:
    ids = [f"lx-r{n:02d}" for n in range(10)]
    with deployment.host() as host:
        for event_id in ids:
            host.invoke("ingress", webhook(event_id))
        first = host.invoke("worker", {"Records": deployment.receive(10)})
        assert len(first["batchItemFailures"]) == 1
        # Nothing else is visible now; the retried message comes back after its delay
        # (RETRY_BASE_DELAY=1 s), which a long poll waits for.
        redelivered = deployment.receive(10, wait=10)
        second = host.invoke("worker", {"Records": redelivered})
    assert len(redelivered) == 1
    assert second == {"batchItemFailures": []}
    assert deployment.count("SELECT count(*) FROM events WHERE status = 'done'") == 10
    assert set(deployment.api.counts()["performed"].values()) == {1}


def test_while_paused_the_sqs_function_runs_nothing_and_after_resume_everything(
    deployment: Deployment, tmp_path: Path
) -> None:
    ids = [f"lx-p{n}" for n in range(3)]
    with deployment.host() as host:
        for event_id in ids:
            host.invoke("ingress", webhook(event_id))
        records = deployment.receive(10)
        assert cli(deployment.env, "pause", "--reason", "audit", cwd=tmp_path).returncode == 0
        held = host.invoke("worker", {"Records": records})
        performed_while_paused = deployment.api.counts()["performed"]
        # Held for PAUSED_AGAIN_IN (60 s), not redelivered at once: no loop while paused.
        redelivered_soon = deployment.receive(10, wait=3)
        assert cli(deployment.env, "resume", cwd=tmp_path).returncode == 0
        # The held messages come back later (PAUSED_AGAIN_IN); their receipts still hold.
        after = host.invoke("worker", {"Records": records})
    assert len(held["batchItemFailures"]) == 3
    assert performed_while_paused == {}
    assert redelivered_soon == []
    assert after == {"batchItemFailures": []}
    assert deployment.count("SELECT count(*) FROM events WHERE status = 'done'") == 3


def test_a_cold_start_without_postgresql_answers_503_not_an_error(
    deployment: Deployment,
) -> None:
    deployment.env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    with deployment.host() as host:
        answer = host.invoke("ingress", webhook("lx-cold"))
    assert answer["statusCode"] == 503
    assert answer["headers"]["retry-after"] == "5"


def test_an_http_api_stage_in_the_raw_path_reaches_the_webhook(deployment: Deployment) -> None:
    event = webhook("lx-stage")
    event["rawPath"] = "/prod/webhooks/auto"
    event["requestContext"]["stage"] = "prod"
    with deployment.host() as host:
        answer = host.invoke("ingress", event)
    assert answer["statusCode"] == 202


GATED = """
[approvers.desk]
chat_id = -1001
user_ids = [42]
""" + POLICY.replace(
    'allowed_actions = ["http"]',
    'allowed_actions = ["http"]\napproval = { actions = ["http"], approvers = ["desk"] }',
)


async def test_a_gated_order_waits_its_request_goes_out_with_the_sweeper_and_a_webhook_answers(
    deployment: Deployment, tmp_path: Path
) -> None:
    (tmp_path / "policy.toml").write_text(GATED)
    bot = ApproversBot()
    async with serving(bot) as bot_base:
        deployment.env.update(
            TELEGRAM_BOT_TOKEN="bot-1",
            TELEGRAM_API_URL=bot_base,
            TELEGRAM_WEBHOOK_SECRET="hook-secret-0123456789",
        )
        with deployment.host() as host:

            async def invoke(handler: str, event: dict[str, Any]) -> Any:
                return await asyncio.to_thread(host.invoke, handler, event)

            assert (await invoke("ingress", webhook("lx-ap")))["statusCode"] == 202
            parked = await invoke("worker", {"Records": deployment.receive(1)})
            assert parked == {"batchItemFailures": []}
            assert deployment.count("SELECT count(*) FROM events WHERE status = 'awaiting'") == 1
            swept = await invoke("sweeper", {})
            assert swept["approvals_sent"] == 1
            press = orjson.dumps(bot.press(bot.sent[0], approve=True, user_id=42))
            headers = {
                "content-type": "application/json",
                "x-telegram-bot-api-secret-token": "hook-secret-0123456789",
            }
            answered = await invoke("ingress", http_event(press, headers, path="/telegram/updates"))
            assert answered["statusCode"] == 200
            resumed = deployment.receive(1, wait=5)
            assert [r["body"] for r in resumed] == ["lx-ap"]
            assert await invoke("worker", {"Records": resumed}) == {"batchItemFailures": []}
        bot.close()
    assert deployment.api.counts()["performed"] == {"lx-ap:order": 1}
    assert deployment.count("SELECT count(*) FROM events WHERE status = 'done'") == 1
