"""The llm decider against a local OpenAI-compatible server (a real HTTP server): nothing reaches
a real provider."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
import pytest

from autorunner.config import Settings
from autorunner.deciding import build_llm_decider
from autorunner.envelope import build_envelope
from autorunner.errors import TransientError
from autorunner.policy import Route
from tests.fake_http import Reply, ScriptedServer, serving
from tests.fake_llm import chat_completion
from tests.helpers import make_event

ROUTE = Route(name="desk", objective="Decide", allowed_actions=("notify",), decider="llm")


def completion(arguments: dict[str, Any]) -> Reply:
    return Reply(200, chat_completion(arguments))


async def decide_with(server: ScriptedServer) -> Any:
    async with serving(server) as base, httpx2.AsyncClient(timeout=5) as http:
        settings = Settings(
            llm_model="fake-1",
            llm_base_url=f"{base}/v1",
            llm_api_key="sk-local",
            llm_temperature=0.2,
        )
        decider = build_llm_decider(settings, http, None)
        return await decider.decide(
            build_envelope(make_event("e1", title="BTC > 100k"), ROUTE),
            {"query": None},
            route=ROUTE,
        )


async def test_a_local_openai_compatible_model_decides_and_the_request_is_recorded() -> None:
    server = ScriptedServer()
    server.on(
        "POST",
        "/v1/chat/completions",
        completion(
            {
                "actions": [{"step_id": "tell", "kind": "notify", "params": {"text": "BTC up"}}],
                "rationale": "price crossed",
            }
        ),
    )
    decision = await decide_with(server)
    assert [(a.step_id, a.kind, a.params) for a in decision.actions] == [
        ("tell", "notify", {"text": "BTC up"})
    ]
    assert decision.version == "openai-compatible:fake-1"
    assert decision.trace["usage"] == {"requests": 1, "input_tokens": 120, "output_tokens": 30}
    [request] = server.requests
    assert request.headers["authorization"] == "Bearer sk-local"
    sent = orjson.loads(request.body)
    assert sent["model"] == "fake-1"
    assert sent["temperature"] == 0.2
    assert "BTC > 100k" in orjson.dumps(sent["messages"]).decode()
    assert any(tool["function"]["name"] == "final_result" for tool in sent["tools"])


async def test_an_unavailable_model_is_a_transient_error() -> None:
    server = ScriptedServer()
    server.on("POST", "/v1/chat/completions", Reply(503, {"error": {"message": "overloaded"}}))
    with pytest.raises(TransientError, match="model unavailable"):
        await decide_with(server)
