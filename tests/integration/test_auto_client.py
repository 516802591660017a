"""AutoClient against a real local HTTP server speaking Auto's documented shapes."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx2
import orjson
import pytest

from autorunner.auto_client import AutoClient, AutoCredentials, retry_at
from autorunner.errors import AutoAuthError, AutoNotFound, AutoUnavailable
from autorunner.retry import RetryPolicy
from tests.fake_http import Reply, ScriptedServer, serving

API_KEY = "key-abc"
HMAC_SECRET = "hmac-xyz"
QUERY = {
    "query": {"conditions": {"AND": []}, "actions": [{"stepId": "s1", "type": "webhook"}]},
    "title": "t",
}


@asynccontextmanager
async def client_for(
    server: ScriptedServer, creds: AutoCredentials | None = None, **kw: object
) -> AsyncIterator[AutoClient]:
    async with serving(server) as base, httpx2.AsyncClient(timeout=5) as http:
        yield AutoClient(
            base_url=f"{base}/v2/auto",
            credentials=creds or AutoCredentials(api_key=API_KEY, hmac_secret=HMAC_SECRET),
            http=http,
            requests_per_minute=kw.pop("rpm", 6000),  # type: ignore[arg-type]
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
            **kw,  # type: ignore[arg-type]
        )


def contract_signature(secret: str, ts: str, method: str, path: str, body: bytes) -> str:
    """auto-contract §1, written out independently of autorunner.signatures."""
    return hmac.new(
        secret.encode(), (ts + method + path).encode() + body, hashlib.sha256
    ).hexdigest()


async def test_mutations_are_signed_over_the_mounted_path_and_exact_body() -> None:
    server = ScriptedServer()
    server.on("POST", "/v2/auto/queries", Reply(201, {"id": "q-1", "status": "active"}))
    async with client_for(server) as client:
        created = await client.create(QUERY)
    assert created.query_id == "q-1"
    [request] = server.requests
    ts = request.headers["x-elfa-timestamp"]
    assert abs(int(ts) - time.time()) < 30
    assert request.headers["x-elfa-signature"] == contract_signature(
        HMAC_SECRET, ts, "POST", "/queries", request.body
    )
    assert orjson.loads(request.body) == QUERY
    assert request.headers["x-elfa-api-key"] == API_KEY


async def test_reads_are_not_signed_and_poll_parses_executions() -> None:
    server = ScriptedServer()
    server.on(
        "GET",
        "/v2/auto/queries/q-1",
        Reply(
            200,
            {
                "queryId": "q-1",
                "status": "active",
                "credits": 0,
                "latestEvaluation": None,
                "executions": [
                    {
                        "id": "ex-1",
                        "queryId": "q-1",
                        "type": "llm",
                        "status": "failed",
                        "error": {"code": "LLM_ACTION_UPSTREAM_ERROR", "message": "m"},
                        "createdAt": "t",
                    }
                ],
            },
        ),
    )
    async with client_for(server) as client:
        status = await client.poll("q-1")
    assert [(e.id, e.status, e.error.code if e.error else None) for e in status.executions] == [
        ("ex-1", "failed", "LLM_ACTION_UPSTREAM_ERROR")
    ]
    assert "x-elfa-signature" not in server.requests[0].headers


async def test_x402_mode_polls_with_post_and_the_agent_secret() -> None:
    server = ScriptedServer()
    server.on("POST", "/v2/auto/queries/q-1", Reply(200, {"queryId": "q-1", "status": "triggered"}))
    creds = AutoCredentials(mode="x402", agent_secret="agent-1")
    async with client_for(server, creds) as client:
        assert (await client.poll("q-1")).status == "triggered"
    headers = server.requests[0].headers
    assert headers["x-elfa-agent-secret"] == "agent-1"
    assert "x-elfa-api-key" not in headers


async def test_no_request_is_sent_before_a_429_reset_time() -> None:
    server = ScriptedServer()
    reset = math.ceil(time.time()) + 1
    server.on(
        "GET",
        "/v2/auto/queries/q-1",
        Reply(429, {"error": "rate limited"}, {"x-ratelimit-reset": str(reset)}),
        Reply(200, {"queryId": "q-1", "status": "active"}),
    )
    server.on("GET", "/v2/auto/queries/q-2", Reply(200, {"queryId": "q-2", "status": "active"}))
    async with client_for(server) as client:
        first = await client.poll("q-1")
        second = await client.poll("q-2")
    assert (first.status, second.status) == ("active", "active")
    after_429 = server.requests[1:]
    assert len(after_429) == 2
    assert all(r.at >= reset for r in after_429)


def test_retry_time_is_read_from_reset_epoch_retry_after_seconds_or_http_date() -> None:
    assert retry_at({"retry-after": "3"}, now=100.0) == 103.0
    assert retry_at({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=0.0) == 1445412480.0
    assert retry_at({"x-ratelimit-reset": "1700000000000"}, now=1.0) == 1700000000.0
    assert retry_at({"x-ratelimit-reset": "5"}, now=100.0) is None
    assert retry_at({}, now=0.0) is None


async def test_server_errors_on_idempotent_calls_are_retried() -> None:
    server = ScriptedServer()
    server.on(
        "GET",
        "/v2/auto/queries/q-1",
        Reply(502),
        Reply(503),
        Reply(200, {"queryId": "q-1", "status": "active"}),
    )
    async with client_for(server) as client:
        assert (await client.poll("q-1")).status == "active"
    assert len(server.requests) == 3


async def test_server_error_on_create_is_not_retried() -> None:
    server = ScriptedServer()
    server.on("POST", "/v2/auto/queries", Reply(500, {"error": "boom"}))
    async with client_for(server) as client:
        with pytest.raises(AutoUnavailable, match="500"):
            await client.create(QUERY)
    assert len(server.requests) == 1


async def test_unauthorized_names_the_credential_and_never_the_secret() -> None:
    server = ScriptedServer()
    server.on("POST", "/v2/auto/queries", Reply(401, {"error": "bad signature"}))
    async with client_for(server) as client:
        with pytest.raises(AutoAuthError) as info:
            await client.create(QUERY)
    message = str(info.value)
    assert "check ELFA_API_KEY and ELFA_HMAC_SECRET" in message
    assert API_KEY not in message
    assert HMAC_SECRET not in message


async def test_cancel_of_a_terminal_query_is_a_success() -> None:
    server = ScriptedServer()
    server.on("POST", "/v2/auto/queries/q-1/cancel", Reply(409, {"error": "query is not active"}))
    async with client_for(server) as client:
        result = await client.cancel("q-1")
    assert result.already_terminal


async def test_create_and_validate_accept_every_documented_spelling() -> None:
    server = ScriptedServer()
    server.on(
        "POST", "/v2/auto/queries", Reply(201, {"queryId": "q-9", "status": "active", "cost": 2})
    )
    server.on(
        "POST",
        "/v2/auto/queries/validate",
        Reply(200, {"valid": True, "errors": [], "warnings": [], "estimatedCredits": 3}),
    )
    async with client_for(server) as client:
        assert (await client.create(QUERY)).query_id == "q-9"
        assert (await client.validate(QUERY)).estimated_cost == 3


async def test_not_found_is_its_own_error() -> None:
    server = ScriptedServer()
    async with client_for(server) as client:
        with pytest.raises(AutoNotFound):
            await client.session("q-1", "s-1")


async def test_requests_are_spaced_to_the_plan_rate() -> None:
    server = ScriptedServer()
    server.on("GET", "/v2/auto/queries/q-1", Reply(200, {"queryId": "q-1"}))
    async with client_for(server, rpm=600) as client:
        for _ in range(3):
            await client.poll("q-1")
    # Three requests at 600/min span at least two intervals of 0.1 s (arrival jitter aside).
    assert server.requests[-1].at - server.requests[0].at >= 0.18


def test_credentials_repr_shows_no_secret() -> None:
    creds = AutoCredentials(api_key="k-secret", hmac_secret="h-secret")
    assert "k-secret" not in repr(creds)
    assert "h-secret" not in repr(creds)


STEERING_IDS = [
    "../executions?limit=1#x",
    "q/../../executions",
    "q?status=active",
    "q#fragment",
    "%2e%2e%2fexecutions",
    "a/b",
    "q id",
]


@pytest.mark.parametrize("query_id", STEERING_IDS)
async def test_an_id_taken_from_an_event_never_steers_a_request_to_another_route(
    query_id: str,
) -> None:
    server = ScriptedServer()
    async with client_for(server) as client:
        with pytest.raises(AutoNotFound):
            await client.poll(query_id)
        with pytest.raises(AutoNotFound):
            await client.session(query_id, query_id)
    poll, session = server.requests
    assert poll.raw_path == "/v2/auto/queries/" + quote(query_id, safe="")
    assert session.raw_path == f"/v2/auto/queries/{quote(query_id, safe='')}/sessions/" + quote(
        query_id, safe=""
    )
    assert (poll.query, session.query) == ("", "")
    assert poll.path == f"/v2/auto/queries/{query_id}"  # one segment, decoded back whole


@pytest.mark.parametrize("query_id", ["", ".", ".."])
async def test_an_empty_or_dot_id_names_no_query_and_sends_nothing(query_id: str) -> None:
    server = ScriptedServer()
    async with client_for(server) as client:
        with pytest.raises(AutoNotFound):
            await client.poll(query_id)
        with pytest.raises(AutoNotFound):
            await client.cancel(query_id)
    assert server.requests == []


async def test_a_signed_call_with_an_encoded_id_is_signed_over_the_path_as_sent() -> None:
    server = ScriptedServer()
    server.on(
        "POST", "/v2/auto/queries/a/b/cancel", Reply(200, {"id": "a/b", "status": "cancelled"})
    )
    async with client_for(server) as client:
        await client.cancel("a/b")
    [request] = server.requests
    assert request.raw_path == "/v2/auto/queries/a%2Fb/cancel"
    assert request.headers["x-elfa-signature"] == contract_signature(
        HMAC_SECRET, request.headers["x-elfa-timestamp"], "POST", "/queries/a%2Fb/cancel", b""
    )
