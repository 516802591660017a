"""The webhook route over real SQLite, through the ASGI app: the design's promise, refusal by refusal."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from standardwebhooks import Webhook

from autorunner.app import Runtime, build_runtime
from autorunner.backends import open_backends
from autorunner.config import Settings
from autorunner.events import normalize_sse
from autorunner.ingest import Ingestor
from autorunner.records import RawDelivery
from autorunner.serving import running
from tests.helpers import canonical, elfa_signature, eventually, signed

SECRET = "whk-secret"


@dataclass
class Client:
    http: httpx2.AsyncClient
    runtime: Runtime
    db_path: Path

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx2.Response:
        return await self.http.post("/webhooks/auto", content=body, headers=headers)

    async def send(self, payload: dict[str, Any], **kw: object) -> httpx2.Response:
        delivery = signed(payload, secret=SECRET, **kw)  # type: ignore[arg-type]
        return await self.post(delivery.body, delivery.headers)

    async def stored_ids(self) -> list[str]:
        return sorted(e.event_id for e in await self.runtime.backends.store.list_events(limit=100))

    async def metrics(self) -> str:
        return (await self.http.get("/metrics")).text


@asynccontextmanager
async def make_client(tmp_path: Path, **overrides: object) -> AsyncIterator[Client]:
    db_path = tmp_path / "runner.db"
    settings = Settings(
        queue_url=f"sqlite:///{db_path}",
        auto_secret=SECRET,
        max_body_bytes=4096,
        **overrides,  # type: ignore[arg-type]
    )
    backends = await open_backends(settings)
    runtime = build_runtime(settings, backends)
    transport = httpx2.ASGITransport(app=runtime.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://runner") as http:
        yield Client(http=http, runtime=runtime, db_path=db_path)
    await runtime.aclose()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with make_client(tmp_path, workers_enabled=False) as c:
        yield c


async def test_signed_webhook_is_accepted_after_it_is_stored_and_queued(client: Client) -> None:
    response = await client.send(canonical("evt-1"))
    assert response.status_code == 202
    assert response.json() == {"accepted": True, "eventId": "evt-1"}
    # Read back with a fresh connection: the row is committed, not just in our writer's cache.
    with sqlite3.connect(client.db_path) as conn:
        assert conn.execute("SELECT status FROM events WHERE event_id = 'evt-1'").fetchone() == (
            "pending",
        )
        assert conn.execute("SELECT count(*) FROM jobs WHERE event_id = 'evt-1'").fetchone() == (1,)


async def test_repeated_event_id_is_a_duplicate_and_queues_nothing_more(client: Client) -> None:
    assert (await client.send(canonical("evt-1"))).status_code == 202
    again = await client.send(canonical("evt-1"))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    stats = await client.runtime.backends.queue.stats()
    assert stats.depth == 1
    assert 'autorunner_events_duplicate_total{channel="webhook"} 1.0' in await client.metrics()


async def test_same_execution_under_another_event_id_is_a_duplicate(client: Client) -> None:
    assert (await client.send(canonical("evt-webhook", execution_id="exec-1"))).status_code == 202
    again = await client.send(canonical("evt-other", execution_id="exec-1"))
    assert again.status_code == 200
    assert again.json()["duplicateOf"] == "exec-1"  # an execution is stored under its own id
    assert await client.stored_ids() == ["exec-1"]
    store = client.runtime.backends.store
    assert [await store.find_event(i) for i in ("evt-webhook", "evt-other")] == ["exec-1"] * 2


async def test_sse_frame_of_an_execution_already_received_by_webhook_is_a_duplicate(
    client: Client,
) -> None:
    frame = orjson.dumps(
        {"status": "triggered", "queryId": "q", "executionId": "exec-7", "title": "t"}
    ).decode()
    assert (await client.send(canonical("evt-webhook", execution_id="exec-7"))).status_code == 202
    event = normalize_sse("notification", "sse-uuid-1", frame)
    assert event is not None
    runtime = client.runtime
    ingestor = Ingestor(outbox=runtime.backends.outbox, metrics=runtime.metrics)
    result = await ingestor.ingest(
        event, RawDelivery(received_at=time.time(), headers={}, body=frame)
    )
    assert result.duplicate_of == "exec-7"
    assert await client.stored_ids() == ["exec-7"]
    assert await runtime.backends.store.find_event("sse-uuid-1") == "exec-7"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.__setattr__("body", d.body.replace(b"BTC", b"ETH")), "bad_signature"),
        (
            lambda d: d.headers.__setitem__(
                "x-auto-signature",
                elfa_signature("wrong", d.headers["x-auto-signature-timestamp"], "evt-1", d.body),
            ),
            "bad_signature",
        ),
        (lambda d: d.headers.pop("x-auto-signature"), "missing_signature"),
        (lambda d: d.headers.pop("x-auto-signature-timestamp"), "missing_timestamp"),
    ],
    ids=["tampered-body", "wrong-secret", "no-signature", "no-timestamp"],
)
async def test_inauthentic_deliveries_get_401_and_nothing_is_stored(
    client: Client, mutate: object, reason: str
) -> None:
    delivery = signed(canonical("evt-1"), secret=SECRET)
    mutate(delivery)  # type: ignore[operator]
    response = await client.post(delivery.body, delivery.headers)
    assert response.status_code == 401
    assert response.json()["error"] == reason
    assert await client.stored_ids() == []
    assert (
        f'autorunner_events_rejected_total{{channel="webhook",reason="{reason}"}} 1.0'
        in await client.metrics()
    )


@pytest.mark.parametrize("drift", [-400, 400], ids=["stale", "future"])
async def test_stale_or_future_timestamps_get_401(client: Client, drift: int) -> None:
    response = await client.send(canonical("evt-1"), ts=int(time.time()) + drift)
    assert response.status_code == 401
    assert response.json()["error"] == "stale_timestamp"
    assert await client.stored_ids() == []


async def test_oversized_body_gets_413_before_verification(client: Client) -> None:
    payload = canonical("evt-big")
    payload["padding"] = "x" * 5000
    response = await client.send(payload)
    assert response.status_code == 413
    assert await client.stored_ids() == []


async def test_oversized_streamed_body_without_length_gets_413(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    headers = signed(canonical("evt-1"), secret=SECRET).headers
    response = await client.http.post("/webhooks/auto", content=chunks(), headers=headers)
    assert response.status_code == 413


async def test_non_json_content_type_gets_415(client: Client) -> None:
    delivery = signed(canonical("evt-1"), secret=SECRET)
    delivery.headers["content-type"] = "text/plain"
    assert (await client.post(delivery.body, delivery.headers)).status_code == 415


async def test_malformed_json_with_valid_signature_gets_400_and_is_kept_as_rejected(
    client: Client,
) -> None:
    body = b'{"eventId": "evt-1", '
    ts = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "x-auto-event-id": "evt-1",
        "x-auto-signature-timestamp": ts,
        "x-auto-signature": elfa_signature(SECRET, ts, "evt-1", body),
    }
    response = await client.post(body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_body"
    assert await client.stored_ids() == []
    assert (await client.runtime.backends.store.stats()).rejected == 1


async def test_unknown_shape_with_valid_signature_gets_400(client: Client) -> None:
    response = await client.send({"hello": "world"}, event_id="evt-1")
    assert response.status_code == 400
    assert "unknown event shape" in response.json()["detail"]


WHSEC = "whsec_" + base64.b64encode(b"standard-webhooks-test-key").decode()


async def test_standard_webhooks_delivery_is_accepted_only_with_its_own_secret(
    tmp_path: Path,
) -> None:
    body = orjson.dumps(canonical("evt-std"))
    now = datetime.now(tz=UTC)
    signature = Webhook(WHSEC).sign("msg_std", now, body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": "msg_std",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    async with make_client(tmp_path, workers_enabled=False) as without:
        refused = await without.post(body, headers)
        assert (refused.status_code, refused.json()["error"]) == (401, "no_secret")
        assert await without.stored_ids() == []
    async with make_client(
        tmp_path, workers_enabled=False, standard_webhooks_secret=WHSEC
    ) as with_secret:
        accepted = await with_secret.post(body, headers)
        assert accepted.status_code == 202
        assert await with_secret.stored_ids() == ["evt-std"]


async def test_a_signed_header_sent_twice_gets_401_and_nothing_is_stored(client: Client) -> None:
    delivery = signed(canonical("evt-1"), secret=SECRET)
    raw = [(k.encode(), v.encode()) for k, v in delivery.headers.items()]
    raw.append((b"x-auto-event-id", b"evt-other"))
    response = await client.http.post("/webhooks/auto", content=delivery.body, headers=raw)
    assert (response.status_code, response.json()["error"]) == (401, "duplicate_header")
    assert await client.stored_ids() == []


async def test_a_signed_body_nested_too_deep_gets_400_and_is_kept_as_rejected(
    client: Client,
) -> None:
    payload: dict[str, object] = canonical("evt-deep")
    inner: dict[str, object] = payload
    for _ in range(40):
        inner["n"] = {}
        inner = inner["n"]  # type: ignore[assignment]
    response = await client.send(payload)
    assert response.status_code == 400
    assert "deeper than 32 levels" in response.json()["detail"]
    assert await client.stored_ids() == []
    assert (await client.runtime.backends.store.stats()).rejected == 1


async def test_get_on_the_webhook_gets_405(client: Client) -> None:
    assert (await client.http.get("/webhooks/auto")).status_code == 405


async def test_missing_event_id_gets_an_id_derived_from_the_signed_content(client: Client) -> None:
    payload = {"eventType": "query.triggered", "queryId": "q"}
    stamp = int(time.time())
    a = await client.send(payload, event_id="", ts=stamp)
    b = await client.send(payload, event_id="", ts=stamp)
    assert a.status_code == 202
    assert a.json()["eventId"].startswith("derived-")
    assert b.status_code == 200
    assert b.json()["eventId"] == a.json()["eventId"]


async def test_store_locked_by_another_process_gets_503_never_202(tmp_path: Path) -> None:
    async with make_client(tmp_path, workers_enabled=False, sqlite_busy_timeout_ms=50) as client:
        blocker = sqlite3.connect(client.db_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            responses = await asyncio.gather(
                *(client.send(canonical(f"evt-{n}")) for n in range(5))
            )
            assert [r.status_code for r in responses] == [503] * 5
            assert all(r.headers["retry-after"] == "5" for r in responses)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert await client.stored_ids() == []
        assert (await client.send(canonical("evt-after"))).status_code == 202
        assert "autorunner_store_unavailable_total 5.0" in await client.metrics()


async def test_signed_webhook_ends_in_a_run_with_one_notify_effect(tmp_path: Path) -> None:
    async with make_client(tmp_path, lease_seconds=5) as client:
        stop = asyncio.Event()
        async with running(client.runtime, stop):
            assert (await client.send(canonical("evt-1"))).status_code == 202
            assert (await client.send(canonical("evt-1"))).status_code == 200
            store = client.runtime.backends.store

            async def done() -> bool:
                detail = await store.get_event("evt-1")
                return detail is not None and detail.summary.status == "done"

            await eventually(done)
            detail = await store.get_event("evt-1")
            assert detail is not None
            ready = await client.http.get("/readyz")
        assert [(r.attempt, r.outcome) for r in detail.runs] == [(1, "done")]
        assert [(e["effect_key"], e["kind"], e["status"]) for e in detail.effects] == [
            ("evt-1:notify", "notify", "done")
        ]
        assert detail.raw.headers["x-auto-event-id"] == "evt-1"
        assert "x-auto-signature" not in detail.raw.headers
        assert ready.status_code == 200
        assert ready.json()["ok"] is True
        assert 'autorunner_jobs_processed_total{outcome="done"} 1.0' in await client.metrics()


async def test_health_is_ok_and_an_ingress_only_process_is_ready_without_workers(
    client: Client,
) -> None:
    assert (await client.http.get("/healthz")).json() == {"ok": True}
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ok"] is True


async def test_metrics_report_queue_depth_and_readiness_reports_lag_without_failing(
    tmp_path: Path,
) -> None:
    async with make_client(tmp_path, workers_enabled=False, lag_threshold=1e-6) as client:
        assert (await client.send(canonical("evt-1"))).status_code == 202
        text = await client.metrics()
        assert "autorunner_queue_depth 1.0" in text
        assert 'autorunner_events_enqueued_total{channel="webhook"} 1.0' in text
        ready = await client.http.get("/readyz")
        # A backlog is an alert, not a reason to take the process out of service.
        assert ready.status_code == 200
        assert (ready.json()["ok"], ready.json()["lagging"]) == (True, True)
