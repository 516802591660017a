"""Outgoing requests with tracing on: each carries its span's ``traceparent``, and the client
still goes where the environment's proxy settings send it."""

from __future__ import annotations

import pytest

from autorunner.app import http_client
from autorunner.tracing import OtelTracing
from tests.fake_http import Reply, ScriptedServer, serving


async def test_with_tracing_on_requests_still_take_the_proxy_and_carry_traceparent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = ScriptedServer()
    proxy.on("GET", "/ping", Reply(200, {"pong": True}))
    tracing = OtelTracing(instance="test", role="serve")
    async with serving(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = http_client(tracing)
        try:
            with tracing.span("effect http"):
                parent = tracing.traceparent()
                # Only the proxy can answer for this host: it does not resolve.
                reply = await client.get("http://upstream.invalid/ping")
        finally:
            await client.aclose()
    tracing.shutdown()
    assert reply.status_code == 200
    (seen,) = proxy.calls("GET", "/ping")
    assert seen.headers["host"] == "upstream.invalid"
    assert parent is not None
    sent = seen.headers["traceparent"].split("-")
    assert sent[1] == parent.split("-")[1], "the same trace"
    assert sent[2] != parent.split("-")[2], "the request's own client span"
