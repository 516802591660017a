"""The SSE subscriber against a real local HTTP server: frames, drops, ends, refusals, gap recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from autorunner.auto_client import AutoClient, AutoCredentials
from autorunner.backends import Backends, open_backends
from autorunner.config import Settings
from autorunner.errors import AutoAuthError
from autorunner.ingest import Ingestor
from autorunner.metrics import Metrics
from autorunner.reconcile import Reconciler
from autorunner.retry import RetryPolicy
from autorunner.subscriber import Subscriber, SubscriberConfig
from tests.fake_http import Reply, ScriptedServer, serving

STREAM = "/v2/auto/queries/q-1/stream"
POLL = "/v2/auto/queries/q-1"
SSE = {"content-type": "text/event-stream"}


def frame_c(execution_id: str, frame_id: str) -> bytes:
    data = {
        "status": "triggered",
        "title": "t",
        "queryId": "q-1",
        "executionId": execution_id,
        "timestamp": 1778655417792,
    }
    return f"id: {frame_id}\nevent: notification\ndata: {orjson.dumps(data).decode()}\n\n".encode()


def poll_reply(*execution_ids: str) -> Reply:
    return Reply(
        200,
        {
            "queryId": "q-1",
            "status": "active",
            "executions": [
                {"id": e, "queryId": "q-1", "type": "notification", "status": "success"}
                for e in execution_ids
            ],
        },
    )


END = b'event: end\ndata: {"code":"QUERY_STREAM_CLOSED","status":"expired","queryId":"q-1"}\n\n'


@dataclass
class Rig:
    server: ScriptedServer
    backends: Backends
    metrics: Metrics
    subscriber: Subscriber

    async def executions(self) -> dict[str, str]:
        events = await self.backends.store.list_events(limit=100)
        return {e.execution_id or "": e.channel for e in events}


@asynccontextmanager
async def rig(
    tmp_path: Path, server: ScriptedServer, creds: AutoCredentials | None = None, app: Any = None
) -> AsyncIterator[Rig]:
    settings = Settings(queue_url=f"sqlite:///{tmp_path / 'r.db'}")
    backends = await open_backends(settings)
    metrics = Metrics()
    async with serving(app or server) as base, httpx2.AsyncClient(timeout=5) as http:
        client = AutoClient(
            base_url=f"{base}/v2/auto",
            credentials=creds or AutoCredentials(api_key="k"),
            http=http,
            requests_per_minute=60_000,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01),
        )
        ingestor = Ingestor(outbox=backends.outbox, metrics=metrics)
        subscriber = Subscriber(
            client=client,
            ingestor=ingestor,
            reconciler=Reconciler(client=client, ingestor=ingestor),
            metrics=metrics,
            query_id="q-1",
            config=SubscriberConfig(
                keepalive=0.2,
                silence_factor=2,
                backoff=RetryPolicy(base_delay=0.01, max_delay=0.05),
            ),
        )
        try:
            yield Rig(server=server, backends=backends, metrics=metrics, subscriber=subscriber)
        finally:
            await backends.close()


async def run(r: Rig) -> str:
    return await asyncio.wait_for(r.subscriber.run(asyncio.Event()), timeout=10)


async def test_frames_are_ingested_and_a_malformed_one_is_skipped_and_counted(
    tmp_path: Path,
) -> None:
    server = ScriptedServer()
    body = (
        frame_c("ex-1", "f1")
        + b"event: notification\ndata: {not json\n\n"
        + frame_c("ex-2", "f2")
        + END
    )
    server.on("GET", STREAM, Reply(200, raw=body, headers=SSE))
    server.on("GET", POLL, poll_reply())
    async with rig(tmp_path, server) as r:
        assert await run(r) == "ended"
        assert await r.executions() == {"ex-1": "sse", "ex-2": "sse"}
        metrics = r.metrics.render().decode()
    assert 'autorunner_events_rejected_total{channel="sse",reason="malformed_frame"} 1.0' in metrics


async def test_end_stops_the_stream_and_triggers_one_reconciliation(tmp_path: Path) -> None:
    server = ScriptedServer()
    server.on("GET", STREAM, Reply(200, raw=frame_c("ex-1", "f1") + END, headers=SSE))
    server.on("GET", POLL, poll_reply(), poll_reply("ex-1", "ex-late"))
    async with rig(tmp_path, server) as r:
        assert await run(r) == "ended"
        found = await r.executions()
    assert len(server.calls("GET", STREAM)) == 1
    assert len(server.calls("GET", POLL)) == 2  # one after connecting, one for the end
    assert found == {"ex-1": "sse", "ex-late": "poll"}


async def test_gone_stops_cleanly_after_one_reconciliation(tmp_path: Path) -> None:
    server = ScriptedServer()
    server.on("GET", STREAM, Reply(410, {"error": "query terminal"}))
    server.on("GET", POLL, poll_reply("ex-9"))
    async with rig(tmp_path, server) as r:
        assert await run(r) == "gone"
        assert await r.executions() == {"ex-9": "poll"}
    assert len(server.calls("GET", POLL)) == 1


async def test_no_content_means_poll_instead(tmp_path: Path) -> None:
    server = ScriptedServer()
    server.on("GET", STREAM, Reply(204))
    server.on("GET", POLL, poll_reply("ex-3"))
    async with rig(tmp_path, server) as r:
        assert await run(r) == "no_content"
        assert await r.executions() == {"ex-3": "poll"}


async def test_unauthorized_stops_with_a_message_naming_the_credential(tmp_path: Path) -> None:
    server = ScriptedServer()
    server.on("GET", STREAM, Reply(401, {"error": "invalid api key"}))
    async with rig(tmp_path, server) as r:
        with pytest.raises(AutoAuthError, match="check ELFA_API_KEY"):
            await run(r)
    assert len(server.calls("GET", STREAM)) == 1


async def test_dropped_stream_reconnects_and_triggers_fired_meanwhile_are_recovered(
    tmp_path: Path,
) -> None:
    server = ScriptedServer()
    server.on(
        "GET",
        STREAM,
        Reply(200, raw=frame_c("ex-1", "f1"), headers=SSE),  # then the connection drops
        Reply(200, raw=frame_c("ex-3", "f3") + END, headers=SSE),
    )
    # ex-2 fired while the stream was down: only the poll after reconnecting knows it.
    server.on(
        "GET", POLL, poll_reply(), poll_reply("ex-1", "ex-2"), poll_reply("ex-1", "ex-2", "ex-3")
    )
    async with rig(tmp_path, server) as r:
        assert await run(r) == "ended"
        found = await r.executions()
    assert found == {"ex-1": "sse", "ex-2": "poll", "ex-3": "sse"}
    assert r.subscriber.connections == 2


async def test_stop_ends_a_subscriber_waiting_to_reconnect(tmp_path: Path) -> None:
    server = ScriptedServer()
    server.on("GET", STREAM, Reply(503, {"error": "down"}))
    async with rig(tmp_path, server) as r:
        stop = asyncio.Event()
        task = asyncio.create_task(r.subscriber.run(stop))
        while len(server.calls("GET", STREAM)) < 2:  # noqa: ASYNC110 - waiting on the fake's record
            await asyncio.sleep(0.01)
        stop.set()
        assert await asyncio.wait_for(task, 5) == "stopped"


class SilentFirstStream:
    """The first stream sends one frame and then nothing (no keep-alive); the second ends."""

    def __init__(self) -> None:
        self.streams = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not scope["path"].endswith("/stream"):
            body = orjson.dumps({"queryId": "q-1", "status": "active", "executions": []})
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.streams += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        if self.streams == 1:
            await send(
                {"type": "http.response.body", "body": frame_c("ex-1", "f1"), "more_body": True}
            )
            await self.release.wait()
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": END})


async def test_silence_past_the_keepalive_allowance_reconnects(tmp_path: Path) -> None:
    app = SilentFirstStream()
    async with rig(tmp_path, ScriptedServer(), app=app) as r:
        try:
            assert await run(r) == "ended"
        finally:
            app.release.set()
        assert await r.executions() == {"ex-1": "sse"}
    assert app.streams == 2
