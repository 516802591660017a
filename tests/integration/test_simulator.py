"""The simulator speaks the contract: our AutoClient against it, in both auth modes, with faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest

from autorunner.auto_client import AutoClient, AutoCredentials
from autorunner.errors import AutoAuthError, AutoRejected
from autorunner.retry import RetryPolicy
from autorunner.sim.simulator import SimConfig, Simulator
from tests.fake_http import serving

QUERY = {
    "title": "t",
    "query": {"conditions": {"AND": []}, "actions": [{"stepId": "s1", "type": "llm"}]},
}


@asynccontextmanager
async def simulated(
    creds: AutoCredentials, *, prefix: str = "/v2/auto", config: SimConfig | None = None
) -> AsyncIterator[tuple[Simulator, AutoClient]]:
    simulator = Simulator(config or SimConfig(api_key="k", agent_secret="a", hmac_secret="h"))
    async with serving(simulator.app, lifespan="on") as base, httpx2.AsyncClient(timeout=5) as http:
        yield (
            simulator,
            AutoClient(
                base_url=base + prefix,
                credentials=creds,
                http=http,
                requests_per_minute=60_000,
                retry=RetryPolicy(max_attempts=3, base_delay=0.01),
            ),
        )


async def test_signed_create_poll_sessions_and_cancel_in_api_key_mode() -> None:
    async with simulated(AutoCredentials(api_key="k", hmac_secret="h")) as (simulator, client):
        created = await client.create(QUERY)
        simulator.trigger(simulator.queries[created.query_id])
        status = await client.poll(created.query_id)
        assert [e.type for e in status.executions] == ["llm"]
        listing = await client.sessions(created.query_id)
        [ref] = listing.sessions
        assert ref.session_id is not None
        session = await client.session(created.query_id, ref.session_id)
        assert session.messages is not None
        assert (await client.cancel(created.query_id)).status == "cancelled"
        assert (await client.cancel(created.query_id)).already_terminal
        page = await client.executions(query_id=created.query_id)
        assert [e.id for e in page.data] == [e.id for e in status.executions]


async def test_unsigned_or_wrongly_signed_mutations_are_refused() -> None:
    async with simulated(AutoCredentials(api_key="k", hmac_secret="wrong")) as (_, client):
        with pytest.raises(AutoAuthError, match="ELFA_HMAC_SECRET"):
            await client.create(QUERY)


async def test_x402_mode_uses_the_agent_secret_and_post_polls() -> None:
    async with simulated(
        AutoCredentials(mode="x402", agent_secret="a", hmac_secret="h"), prefix="/x402/v2/auto"
    ) as (
        _,
        client,
    ):
        created = await client.create(QUERY)
        assert (await client.poll(created.query_id)).status == "active"
    async with simulated(
        AutoCredentials(mode="x402", agent_secret="nope"), prefix="/x402/v2/auto"
    ) as (_, client):
        with pytest.raises(AutoAuthError, match="ELFA_AGENT_SECRET"):
            await client.poll("whatever")


async def test_injected_429_and_5xx_are_absorbed_by_the_client() -> None:
    async with simulated(AutoCredentials(api_key="k", hmac_secret="h")) as (simulator, client):
        created = await client.create(QUERY)
        simulator.faults.rate_limit_next = 1
        simulator.faults.error_next = 1
        assert (await client.poll(created.query_id)).query_id == created.query_id
        # Both faults were served (a 429, then a 503) before the poll went through.
        assert (simulator.stats["rate_limited"], simulator.stats["errors_injected"]) == (1, 1)
        assert (simulator.faults.rate_limit_next, simulator.faults.error_next) == (0, 0)


async def test_invalid_query_is_rejected_with_422() -> None:
    async with simulated(AutoCredentials(api_key="k", hmac_secret="h")) as (_, client):
        assert not (await client.validate({"title": "no query"})).valid
        with pytest.raises(AutoRejected, match="422"):
            await client.create({"title": "no query"})
