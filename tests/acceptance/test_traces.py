"""Traces, as a user with an OTLP backend sees them: ``autorunner serve`` (local) and
``autorunner ingress``/``worker`` (cloud) started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` export
to a real OTLP/HTTP receiver; every event is one trace from the webhook to the last effect, the
model call carries the GenAI conventions, every outgoing request carries ``traceparent``, and a
worker SIGKILLed mid-effect leaves the retry in the same trace."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx2
import orjson

from autorunner.sim.sender import sample_event, send_event
from tests.acceptance.runner import SECRET, base_env, start_server
from tests.cloud.harness import cloud_stack, fake_api
from tests.fake_api import IdempotentApi
from tests.fake_http import Reply, ScriptedServer, serving
from tests.fake_llm import FakeModel
from tests.fake_otlp import OtlpReceiver, Received
from tests.fake_telegram import TelegramBot
from tests.helpers import eventually
from tests.integration.test_subscriber import END, POLL, SSE, STREAM, frame_c, poll_reply
from tests.services import need

POLICY = """
[default]
decider = "llm"
context = ["query"]
allowed_actions = ["telegram", "http"]
"""


class Traceparents:
    """Wraps a fake server's app and keeps the ``traceparent`` of every request it gets."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(dict(scope["headers"]).get(b"traceparent", b"").decode())
        await self.app(scope, receive, send)

    def trace_ids(self) -> set[str]:
        return {value.split("-")[1] for value in self.seen if value}


def answer(event_id: str, n: int) -> dict[str, Any]:
    return {
        "actions": [
            {"step_id": "tell", "kind": "telegram", "params": {"chat": "desk", "text": event_id}},
            {"step_id": "order", "kind": "http", "params": {"endpoint": "orders", "body": {}}},
        ],
        "rationale": "seen",
    }


def status_of(db: Path, event_id: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else str(row[0])


def by_name(spans: list[Received]) -> dict[str, Received]:
    return {span.name: span for span in spans}


async def test_one_webhook_is_one_trace_from_receipt_through_the_model_to_each_effect(
    tmp_path: Path,
) -> None:
    receiver = OtlpReceiver()
    auto = ScriptedServer()
    auto.on(
        "GET", "/v2/auto/queries/q-trace", Reply(200, {"queryId": "q-trace", "status": "active"})
    )
    elfa, model = Traceparents(auto), Traceparents(FakeModel(answer))
    bot, api = Traceparents(TelegramBot(delay=0)), Traceparents(IdempotentApi(fail_every=10**6))
    db = tmp_path / "runner.db"
    (tmp_path / "policy.toml").write_text(POLICY)
    async with (
        serving(receiver) as otlp,
        serving(elfa) as elfa_base,
        serving(model) as model_base,
        serving(bot) as bot_base,
        serving(api) as api_base,
    ):
        env = base_env(
            db,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
            OTEL_BSP_SCHEDULE_DELAY="50",
            OTEL_SERVICE_NAME="runner-under-test",
            RUNNER_POLICY=str(tmp_path / "policy.toml"),
            ELFA_API_KEY="k-1",
            ELFA_BASE_URL=f"{elfa_base}/v2/auto",
            LLM_MODEL="fake-1",
            LLM_BASE_URL=f"{model_base}/v1",
            LLM_API_KEY="sk-local",
            TELEGRAM_BOT_TOKEN="t0k",
            TELEGRAM_CHATS="desk=1",
            TELEGRAM_API_URL=bot_base,
            TELEGRAM_CHAT_INTERVAL="0",
            HTTP_ENDPOINTS=f"orders={api_base}/orders",
        )
        server = start_server(env, tmp_path, tmp_path / "serve.log")
        body = sample_event(event_id="tr-1") | {"queryId": "q-trace"}
        async with httpx2.AsyncClient(timeout=5) as client:
            reply = await send_event(client, server.url, SECRET, body, event_id="tr-1")
            assert reply.status == 202
            duplicate = await send_event(client, server.url, SECRET, body, event_id="tr-1")
            assert duplicate.status == 200

        async def done() -> bool:
            return status_of(db, "tr-1") == "done"

        await eventually(done, within=30)
        assert await asyncio.to_thread(server.terminate) == 0  # a clean stop sends what is left

    spans = receiver.of_event("tr-1")
    traces = {span.trace_id for span in spans}
    assert len(traces) == 2, "the event's trace, and the duplicate delivery's own short one"
    admitted = [
        s for s in spans if s.name == "admit" and "autorunner.duplicate_of" not in s.attributes
    ]
    assert len(admitted) == 1
    trace = admitted[0].trace_id
    mine = [span for span in spans if span.trace_id == trace]
    named = by_name(mine)
    assert {
        "POST /webhooks/auto",
        "verify",
        "admit",
        "queue wait",
        "attempt",
        "facts",
        "context",
        "decide",
        "chat fake-1",
        "verdict",
        "effect telegram",
        "effect http",
        "settle",
    } <= set(named)
    assert all(span.resource["service.name"] == "runner-under-test" for span in mine)
    # The tree: receipt → admit → (queue wait, attempt → facts, context, decide → chat, verdict,
    # effects → their requests, settle).
    server_span = named["POST /webhooks/auto"]
    assert server_span.kind == "server"
    assert server_span.parent_id == ""
    assert server_span.attributes["http.response.status_code"] == 202
    assert named["verify"].parent_id == server_span.span_id
    assert named["admit"].parent_id == server_span.span_id
    for child in ("queue wait", "attempt"):
        assert named[child].parent_id == named["admit"].span_id
    attempt = named["attempt"]
    assert attempt.kind == "consumer"
    assert attempt.attributes["autorunner.attempt"] == 1
    assert attempt.attributes["autorunner.outcome"] == "done"
    for child in (
        "facts",
        "context",
        "decide",
        "verdict",
        "effect telegram",
        "effect http",
        "settle",
    ):
        assert named[child].parent_id == attempt.span_id, child
    chat, agent = named["chat fake-1"], named["invoke_agent autorunner"]
    assert agent.parent_id == named["decide"].span_id
    assert chat.parent_id == agent.span_id
    assert chat.attributes["gen_ai.request.model"] == "fake-1"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 120
    assert chat.attributes["gen_ai.usage.output_tokens"] == 30
    everything = orjson.dumps([s.attributes for s in mine]).decode()
    assert "price alert" not in everything, "the prompt stays in the audit record, not in traces"
    assert "t0k" not in everything, "no token in spans (Telegram's is in its URL path)"
    effect = named["effect http"]
    assert effect.attributes["autorunner.effect_key"] == "tr-1:order"
    assert effect.attributes["autorunner.outcome"] == "done"
    assert named["verdict"].attributes["autorunner.allowed"] == 2
    # Each outgoing request is a client span under its step, and the remote got its context.
    requests = [s for s in mine if s.kind == "client" and s.name in ("GET", "POST")]
    parents = {
        named_span.name
        for r in requests
        for named_span in mine
        if named_span.span_id == r.parent_id
    }
    assert {"facts", "effect telegram", "effect http"} <= parents
    for remote in (elfa, model, bot, api):
        assert remote.trace_ids() == {trace}


async def test_a_worker_killed_mid_effect_leaves_the_retry_in_the_same_trace_in_cloud_mode(
    tmp_path: Path,
) -> None:
    need("redis-server")
    need("postgres-binaries")
    receiver = OtlpReceiver()
    slow = Traceparents(IdempotentApi(fail_every=10**6, delay=1.5))
    async with serving(receiver) as otlp, serving(slow) as slow_base:
        with (
            fake_api(tmp_path) as unused,
            cloud_stack(
                tmp_path,
                unused,
                HTTP_ENDPOINTS=f"orders={slow_base}/orders",
                OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
                OTEL_BSP_SCHEDULE_DELAY="50",
            ) as stack,
        ):
            ingress = stack.start("ingress")
            first = stack.start("worker")
            async with httpx2.AsyncClient(timeout=5) as client:
                body = sample_event(event_id="kx-1")
                reply = await send_event(client, ingress.url, SECRET, body, event_id="kx-1")
                assert reply.status == 202

            async def effect_in_flight() -> bool:
                # The request reached the API, and the spans the first worker ended are out.
                return bool(slow.seen) and bool(receiver.named("verdict"))

            await eventually(effect_in_flight, within=30)
            await asyncio.to_thread(first.kill)
            second = stack.start("worker")

            async def done() -> bool:
                return stack.count("SELECT count(*) FROM events WHERE status = 'done'") == 1

            await eventually(done, within=60)
            for process in (second, ingress):
                assert await asyncio.to_thread(process.terminate) == 0

    spans = receiver.of_event("kx-1")
    assert len({span.trace_id for span in spans}) == 1, "one event, one trace"
    named = {(s.name, s.attributes.get("autorunner.attempt")): s for s in spans}
    admit = named[("admit", None)]
    retry = named[("attempt", 2)]
    assert retry.parent_id == admit.span_id
    assert retry.attributes["autorunner.outcome"] == "done"
    # Both workers ruled on the event in that trace: the killed one, then the one that took over.
    workers = {s.resource["service.instance.id"] for s in spans if s.name == "verdict"}
    assert len(workers) == 2
    assert retry.resource["service.instance.id"] in workers
    assert admit.resource["autorunner.role"] == "ingress"
    assert len(slow.seen) == 2
    assert slow.trace_ids() == {admit.trace_id}


async def test_stream_and_poll_deliveries_each_start_a_trace_that_their_attempts_continue(
    tmp_path: Path,
) -> None:
    receiver = OtlpReceiver()
    auto = ScriptedServer()
    # One frame on the stream, then its end; the reconciling poll finds a trigger it missed.
    auto.on("GET", STREAM, Reply(200, raw=frame_c("x-sse", "f-1") + END, headers=SSE))
    auto.on("GET", POLL, poll_reply("x-poll"))
    db = tmp_path / "runner.db"
    async with serving(receiver) as otlp, serving(auto) as base:
        env = base_env(
            db,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
            OTEL_BSP_SCHEDULE_DELAY="50",
            ELFA_API_KEY="k-1",
            ELFA_BASE_URL=f"{base}/v2/auto",
            STREAM_QUERIES="q-1",
        )
        server = start_server(env, tmp_path, tmp_path / "serve.log")

        async def both_done() -> bool:
            return status_of(db, "x-sse") == status_of(db, "x-poll") == "done"

        await eventually(both_done, within=30)
        assert await asyncio.to_thread(server.terminate) == 0

    for event_id, channel in (("x-sse", "sse"), ("x-poll", "poll")):
        roots = [
            s
            for s in receiver.of_event(event_id)
            if s.name == "admit" and s.attributes["autorunner.event_id"] == event_id
        ]
        first = [s for s in roots if "autorunner.duplicate_of" not in s.attributes]
        assert len(first) == 1
        assert first[0].parent_id == ""
        assert first[0].kind == "producer"
        assert first[0].attributes["autorunner.channel"] == channel
        trace = [s for s in receiver.spans if s.trace_id == first[0].trace_id]
        attempt = next(s for s in trace if s.name == "attempt")
        assert attempt.parent_id == first[0].span_id
        assert attempt.attributes["autorunner.outcome"] == "done"
