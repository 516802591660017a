"""Context in the worker: the query's status and, for LLM actions, the session output, from a real
local HTTP server speaking Auto's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx2

from autorunner.adapters.notify import NotifyAdapter
from autorunner.auto_client import AutoClient, AutoCredentials
from autorunner.context import AutoContext
from autorunner.deciders.rules import RulesDecider
from autorunner.errors import AutoAuthError, AutoUnavailable
from autorunner.pipeline import Attempt, Pipeline
from autorunner.policy import default_policy
from autorunner.records import Leased
from autorunner.retry import RetryPolicy
from autorunner.store.memory import MemoryStore
from tests.fake_http import Reply, ScriptedServer, serving
from tests.helpers import make_event, raw_delivery

POLL = "/v2/auto/queries/q-1"


@asynccontextmanager
async def pipeline_for(server: ScriptedServer) -> AsyncIterator[tuple[Pipeline, MemoryStore]]:
    store = MemoryStore()
    async with serving(server) as base, httpx2.AsyncClient(timeout=5) as http:
        client = AutoClient(
            base_url=f"{base}/v2/auto",
            credentials=AutoCredentials(api_key="k"),
            http=http,
            requests_per_minute=60_000,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01),
        )
        yield (
            Pipeline(
                ledger=store,
                flags=store,
                approvals=store,
                policy=default_policy(),
                deciders={"rules": RulesDecider()},
                adapters={"notify": NotifyAdapter()},
                context=AutoContext(client),
            ),
            store,
        )


def active_query(*executions: dict[str, str]) -> Reply:
    """Auto's poll answer for an active ``q-1`` with these executions."""
    listed = [{"queryId": "q-1", **execution} for execution in executions]
    return Reply(200, {"queryId": "q-1", "status": "active", "executions": listed})


async def run_one(pipeline: Pipeline, store: MemoryStore, event_id: str = "e1") -> Attempt:
    event = make_event(event_id, execution_id=f"ex-{event_id[1:]}", query_id="q-1")
    await store.insert_event(event, raw_delivery())
    leased = await store.acquire(event_id, owner="w", lease=30)
    assert isinstance(leased, Leased)
    return await pipeline.run(leased)


async def test_llm_execution_brings_the_latest_session_output_into_the_run_record() -> None:
    server = ScriptedServer()
    server.on("GET", POLL, active_query({"id": "ex-1", "type": "llm", "status": "success"}))
    server.on(
        "GET",
        f"{POLL}/sessions",
        Reply(
            200,
            {
                "sessions": [
                    {"sessionId": "s-old", "status": "done", "executedAt": "2026-01-01T00:00:00Z"},
                    {"sessionId": "s-new", "status": "done", "executedAt": "2026-02-01T00:00:00Z"},
                ]
            },
        ),
    )
    server.on(
        "GET",
        f"{POLL}/sessions/s-new",
        Reply(
            200,
            {
                "sessionId": "s-new",
                "queryId": "q-1",
                "title": None,
                "analysisType": None,
                "createdAt": None,
                "messages": [
                    {
                        "query": "q",
                        "response": "buy",
                        "status": None,
                        "analysisType": None,
                        "timestamp": None,
                    }
                ],
            },
        ),
    )
    async with pipeline_for(server) as (pipeline, store):
        attempt = await run_one(pipeline, store)
    assert attempt.error is None
    context = attempt.record.context or {}
    assert context["query"]["status"] == "active"
    assert context["llm_session"]["session_id"] == "s-new"
    assert context["llm_session"]["messages"][0]["response"] == "buy"


async def test_unknown_query_is_recorded_and_does_not_block_the_run() -> None:
    server = ScriptedServer()
    server.on("GET", POLL, Reply(404, {"error": "query not found"}))
    async with pipeline_for(server) as (pipeline, store):
        attempt = await run_one(pipeline, store)
    assert attempt.error is None
    assert (attempt.record.context or {})["query"] is None
    assert "404" in (attempt.record.context or {})["query_error"]
    assert [e["status"] for e in attempt.record.effects] == ["done"]


async def test_auto_refusing_the_key_falls_back_to_the_deliverys_facts_and_says_so() -> None:
    server = ScriptedServer()
    server.on("GET", POLL, Reply(401, {"error": "invalid api key"}))
    async with pipeline_for(server) as (pipeline, store):
        route = pipeline.policy.default
        pipeline.policy = replace(pipeline.policy, default=replace(route, context=()))
        attempt = await run_one(pipeline, store)
        pipeline.policy = replace(pipeline.policy, default=route)
        wants_context = await run_one(pipeline, store, "e2")
    # A rotated key must not dead-letter the events of routes that ask Auto for nothing...
    assert attempt.error is None
    assert [e["status"] for e in attempt.record.effects] == ["done"]
    # ...while a route that asked for Auto's context does not decide without it.
    assert isinstance(wants_context.error, AutoAuthError)
    context = attempt.record.context or {}
    assert "refused the credentials" in context["facts_error"]
    envelope = attempt.record.envelope or {}
    assert envelope["trigger"]["title"] == make_event().title


async def test_failed_fetch_is_a_transient_error_and_nothing_is_executed() -> None:
    server = ScriptedServer()
    server.on("GET", POLL, Reply(503, {"error": "catalog unavailable"}))
    async with pipeline_for(server) as (pipeline, store):
        attempt = await run_one(pipeline, store)
    assert isinstance(attempt.error, AutoUnavailable)
    assert attempt.record.effects == []


async def test_events_of_one_query_share_a_poll_within_the_cache_window() -> None:
    server = ScriptedServer()
    server.on("GET", POLL, active_query())
    async with pipeline_for(server) as (pipeline, store):
        for n in range(3):
            event = make_event(f"e{n}", execution_id=f"ex-{n}", query_id="q-1")
            await store.insert_event(event, raw_delivery())
            leased = await store.acquire(f"e{n}", owner="w", lease=30)
            assert leased is not None
            assert (await pipeline.run(leased)).error is None
    assert len(server.calls("GET", POLL)) == 1


async def test_a_route_fetches_only_the_context_it_names() -> None:
    server = ScriptedServer()
    server.on("GET", POLL, active_query({"id": "ex-1", "type": "llm"}))
    server.on("GET", f"{POLL}/sessions", Reply(200, {"sessions": []}))
    async with pipeline_for(server) as (pipeline, store):
        route = pipeline.policy.default
        pipeline.policy = replace(pipeline.policy, default=replace(route, context=()))
        nothing = await run_one(pipeline, store, "e1")
        polls_for_nothing = len(server.calls("GET", POLL))
        pipeline.policy = replace(pipeline.policy, default=replace(route, context=("query",)))
        only_query = await run_one(pipeline, store, "e2")
    assert nothing.record.context == {}
    # The trigger's facts come from Auto's record of the query for every route (one decision
    # whichever channel delivered the event); the route's own context adds nothing to that poll.
    assert polls_for_nothing == 1
    assert len(server.calls("GET", POLL)) == 1
    context = only_query.record.context or {}
    assert list(context) == ["query"]
    assert context["query"]["status"] == "active"
    assert server.calls("GET", f"{POLL}/sessions") == []  # the LLM session was never asked for
