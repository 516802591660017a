"""Elfa's official Python SDK (``elfa-sdk``) against the simulator over real HTTP, one test per
Auto call it makes, so the fake cannot drift from what the real client expects. The last test
fails when a new SDK version adds a call no test here makes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from elfa.client.auto_client import AsyncAutoClient
from elfa.exceptions import ElfaAPIError

from autorunner.sim.api import SimQuery
from autorunner.sim.simulator import SimConfig, Simulator
from tests.fake_http import serving

KEY = "sdk-key"
QUERY = {
    "title": "BTC above 100k",
    "description": "watch BTC",
    "query": {
        "conditions": {
            "AND": [{"source": "price", "args": {"symbol": "BTC"}, "operator": ">", "value": 1}]
        },
        "actions": [{"stepId": "s1", "type": "llm", "params": {"prompt": "act?"}}],
        "expiresIn": "24h",
    },
}
CALLED: set[str] = set()
T = TypeVar("T")


@pytest.fixture
async def sdk() -> AsyncIterator[tuple[AsyncAutoClient, Simulator]]:
    simulator = Simulator(SimConfig(api_key=KEY, keepalive=0.2))
    async with serving(simulator.app) as base:
        client = AsyncAutoClient(KEY, base_url=base, retries=0)
        try:
            yield client, simulator
        finally:
            await client.close()


def exercises(*names: str) -> Callable[[T], T]:
    """Register, at import, the SDK calls a test makes (order-independent coverage)."""

    def mark(test: T) -> T:
        CALLED.update(names)
        return test

    return mark


async def created(client: AsyncAutoClient) -> str:
    query = await client.create_query(QUERY)
    assert query.id or query.query_id
    return str(query.id or query.query_id)


@exercises("validate_query", "create_query")
async def test_validate_and_create_a_query(sdk: tuple[AsyncAutoClient, Simulator]) -> None:
    client, simulator = sdk
    validation = await client.validate_query(QUERY)
    assert validation.valid is True
    assert validation.estimated_credits == 1
    query_id = await created(client)
    assert simulator.queries[query_id].body["title"] == "BTC above 100k"


@exercises("list_queries")
async def test_list_queries_filters_by_status_and_search_and_pages(
    sdk: tuple[AsyncAutoClient, Simulator],
) -> None:
    client, _ = sdk
    first, second = await created(client), await created(client)
    await client.cancel_query(second)
    page = await client.list_queries(status="active", search="btc", limit=10, offset=0)
    assert [q.id for q in page.queries] == [first]
    assert page.total == 1
    assert (await client.list_queries(limit=1, offset=1)).queries[0].id == second


@exercises("get_query", "cancel_query", "delete_query")
async def test_poll_cancel_and_delete_a_query(sdk: tuple[AsyncAutoClient, Simulator]) -> None:
    client, simulator = sdk
    query_id = await created(client)
    simulator.trigger(simulator.queries[query_id], channels=frozenset())
    polled = await client.get_query(query_id)
    assert (polled.query_id, polled.status, len(polled.executions)) == (query_id, "active", 1)
    with pytest.raises(ElfaAPIError) as active:
        await client.delete_query(query_id)
    assert active.value.status_code == 409
    assert (await client.cancel_query(query_id)).status == "cancelled"
    assert (await client.delete_query(query_id)).id == query_id
    assert query_id not in simulator.queries


@exercises("list_sessions", "get_session", "list_executions", "get_execution")
async def test_sessions_and_executions_of_an_llm_query(
    sdk: tuple[AsyncAutoClient, Simulator],
) -> None:
    client, simulator = sdk
    query_id = await created(client)
    execution = simulator.trigger(simulator.queries[query_id], channels=frozenset())
    sessions = await client.list_sessions(query_id)
    [summary] = sessions.sessions
    session = await client.get_session(query_id, summary.session_id)
    assert (session.query_id, session.messages[0].response) == (query_id, "hold")
    listed = await client.list_executions(query_id=query_id, execution_type="llm", limit=5)
    assert [e.id for e in listed.data] == [execution["id"]]
    assert (await client.get_execution(execution["id"])).query_id == query_id


@exercises(
    "upsert_draft",
    "list_drafts",
    "get_draft",
    "validate_draft",
    "convert_draft",
    "delete_draft",
)
async def test_drafts_from_upsert_to_convert(sdk: tuple[AsyncAutoClient, Simulator]) -> None:
    client, simulator = sdk
    draft = await client.upsert_draft({"title": "BTC draft"})
    assert draft.id is not None
    updated = await client.upsert_draft({"id": draft.id, "query": QUERY["query"]})
    assert (updated.id, updated.title, updated.valid) == (draft.id, "BTC draft", True)
    assert [d.id for d in (await client.list_drafts(search="btc")).drafts] == [draft.id]
    assert (await client.get_draft(draft.id)).title == "BTC draft"
    assert (await client.validate_draft(draft.id)).valid is True
    converted = await client.convert_draft(draft.id)
    assert converted.draft_id == draft.id
    assert converted.query.id in simulator.queries
    await client.delete_draft(draft.id)
    with pytest.raises(ElfaAPIError) as gone:
        await client.get_draft(draft.id)
    assert gone.value.status_code == 404


@exercises("validate_symbol", "chat")
async def test_validate_symbol_and_chat(sdk: tuple[AsyncAutoClient, Simulator]) -> None:
    client, _ = sdk
    assert (await client.validate_symbol("binance", "BTC/USDT")).supported == "true"
    assert (await client.validate_symbol("hyperliquid", "NOPE")).supported == "false"
    reply = await client.chat("is BTC trending?", speed="fast")
    assert reply.session_id
    assert "is BTC trending?" in reply.response


@exercises("stream_query")
async def test_a_query_stream_delivers_its_trigger_then_ends_on_cancel(
    sdk: tuple[AsyncAutoClient, Simulator],
) -> None:
    client, simulator = sdk
    query_id = await created(client)
    events = await _read_while(
        client.stream_query(query_id),
        simulator,
        act=lambda: _trigger_then_cancel(simulator, query_id),
    )
    assert [e.event for e in events] == ["ready", "notification", "end"]
    assert events[1].data["queryId"] == query_id
    assert events[2].data == {
        "code": "QUERY_STREAM_CLOSED",
        "status": "cancelled",
        "queryId": query_id,
    }


@exercises("stream_all")
async def test_the_account_stream_delivers_every_querys_triggers(
    sdk: tuple[AsyncAutoClient, Simulator],
) -> None:
    client, simulator = sdk
    query_id = await created(client)
    stream = client.stream_all()
    events = await _read_while(
        stream, simulator, act=lambda: simulator.trigger(simulator.queries[query_id]), count=2
    )
    assert [e.event for e in events] == ["ready", "notification"]
    await stream.aclose()


def test_every_auto_call_of_the_sdk_is_exercised() -> None:
    calls = {
        name
        for name, member in inspect.getmembers(AsyncAutoClient)
        if not name.startswith("_") and name != "close" and callable(member)
    }
    assert calls == CALLED, f"not exercised against the simulator: {sorted(calls - CALLED)}"


async def _trigger_then_cancel(simulator: Simulator, query_id: str) -> None:
    query: SimQuery = simulator.queries[query_id]
    simulator.trigger(query)
    query.status = "cancelled"
    simulator.end_streams(query)


async def _read_while(
    stream: AsyncIterator[Any], simulator: Simulator, *, act: Any, count: int | None = None
) -> list[Any]:
    """Read ``stream`` (until it ends, or ``count`` events), doing ``act`` once it is open."""
    events: list[Any] = []

    async def read() -> None:
        async for event in stream:
            events.append(event)
            if count is not None and len(events) >= count:
                return

    reader = asyncio.create_task(read())
    async with asyncio.timeout(10):
        while not any(simulator.streams.values()):  # noqa: ASYNC110 - the simulator's own state
            await asyncio.sleep(0.01)
        result = act()
        if inspect.isawaitable(result):
            await result
        await reader
    return events
