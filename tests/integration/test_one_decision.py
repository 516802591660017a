"""One execution, one decision: the same trigger delivered by each channel — both webhook bodies,
the three stream frame versions and the gap-filling poll — gets the same envelope, decision and
verdict under the README's policy, with Auto's record of the query read from the simulator over
real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.auto_client import AutoClient, AutoCredentials
from autorunner.context import AutoContext
from autorunner.deciders.rules import RulesDecider
from autorunner.decision import Action
from autorunner.events import Event, normalize_execution, normalize_sse, normalize_webhook
from autorunner.notional import Notional, Valuer
from autorunner.pipeline import Pipeline
from autorunner.policy_file import load_policy
from autorunner.records import RunRecord
from autorunner.sim.api import SimQuery
from autorunner.sim.frames import stream_frame, webhook_body
from autorunner.sim.simulator import SimConfig, Simulator
from autorunner.sse import SSEDecoder
from autorunner.store.memory import MemoryStore
from tests.fake_http import serving
from tests.helpers import VALUERS, raw_delivery, readme_policy

QUERY = {
    "title": "BTC above 100k",
    "description": "BTC crossed 100000",
    "query": {
        "conditions": {
            "AND": [
                {
                    "source": "price",
                    "method": "current",
                    "args": {"symbol": "BTC"},
                    "operator": ">",
                    "value": 100000,
                }
            ]
        },
        "actions": [{"stepId": "s1", "type": "webhook", "params": {"url": "http://runner"}}],
    },
}


class Recording:
    """Performs nothing, records what it was asked; valued like the real kind."""

    delivery: DeliveryMode = "at_least_once"
    waits_to_send = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._valuer: Valuer = VALUERS[kind]
        self.calls: list[dict[str, Any]] = []

    def notional(self, params: Mapping[str, Any]) -> Notional:
        return self._valuer(params)

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        await sending()
        self.calls.append({"key": effect_key, "params": action.params})
        return {"ok": True}


def deliveries(
    simulator: Simulator, query: SimQuery, execution: dict[str, Any]
) -> dict[str, Event]:
    """The execution as each channel delivers it, normalized as ingress does."""
    firing = simulator.firing(query, execution)
    found: dict[str, Event] = {}
    for shape in ("canonical", "notification"):
        event_id, body = webhook_body(shape, firing)
        found[f"webhook-{shape}"] = normalize_webhook(
            orjson.loads(body), delivery_id=event_id, fallback_id="unused"
        )
    for version in ("A", "B", "C"):
        [frame] = SSEDecoder().feed(stream_frame(version, firing))
        event = normalize_sse(frame.event, frame.id, frame.data)
        assert event is not None
        found[f"sse-{version}"] = event
    found["poll"] = normalize_execution(execution, query_id=query.id)
    return found


@asynccontextmanager
async def simulated_auto() -> AsyncIterator[tuple[Simulator, AutoClient]]:
    simulator = Simulator(SimConfig(api_key="k"))
    async with serving(simulator.app) as base, httpx2.AsyncClient() as http:
        yield (
            simulator,
            AutoClient(
                base_url=f"{base}/v2/auto",
                credentials=AutoCredentials(api_key="k"),
                http=http,
                requests_per_minute=60_000,
            ),
        )


async def decide(client: AutoClient, event: Event, tmp_path: Path) -> tuple[RunRecord, Recording]:
    (tmp_path / "policy.toml").write_text(readme_policy())
    store = MemoryStore()
    http, telegram = Recording("http"), Recording("telegram")
    pipeline = Pipeline(
        ledger=store,
        flags=store,
        approvals=store,
        policy=load_policy(tmp_path / "policy.toml"),
        deciders={"rules": RulesDecider()},
        adapters={"http": http, "telegram": telegram, "notify": Recording("notify")},
        context=AutoContext(client, cache_seconds=0),
    )
    await store.insert_event(event, raw_delivery())
    leased = await store.acquire(event.event_id, owner="w", lease=30)
    assert leased is not None
    attempt = await pipeline.run(leased)
    assert attempt.error is None
    return attempt.record, http


async def test_every_channel_gets_the_same_envelope_decision_and_effects(tmp_path: Path) -> None:
    async with simulated_auto() as (simulator, client):
        query = SimQuery(id="q-btc", body=QUERY)
        simulator.queries[query.id] = query
        execution = simulator.trigger(query, channels=frozenset())
        outcomes = {}
        for name, event in deliveries(simulator, query, execution).items():
            record, http = await decide(client, event, tmp_path)
            outcomes[name] = (
                record.route,
                record.envelope,
                record.decision,
                record.verdict,
                [(e["effect_key"], e["status"]) for e in record.effects],
                http.calls,
            )
    first = outcomes["webhook-canonical"]
    assert all(outcome == first for outcome in outcomes.values()), {
        name: outcome for name, outcome in outcomes.items() if outcome != first
    }
    route, envelope, decision, verdict, effects, calls = first
    assert route == "btc"
    assert decision is not None
    assert decision["rationale"] == "rule 1 of route 'btc'"
    assert envelope is not None
    assert envelope["eventId"] == execution["id"]
    assert envelope["trigger"] == {
        "eventType": "query.triggered",
        "status": "triggered",
        "title": "BTC above 100k",
        "body": "BTC crossed 100000",
        "symbol": "BTC",
        "occurredAt": execution["createdAt"],
    }
    assert verdict is not None
    assert [a["step_id"] for a in verdict["allowed"]] == ["tell", "order"]
    assert effects == [(f"{execution['id']}:tell", "done"), (f"{execution['id']}:order", "done")]
    assert calls == [{"key": f"{execution['id']}:order", "params": verdict["allowed"][1]["params"]}]


@pytest.mark.parametrize("version", ["A", "B", "C"])
async def test_without_auto_the_delivered_texts_decide_and_the_kind_is_still_canonical(
    version: str,
) -> None:
    simulator = Simulator(SimConfig())
    query = SimQuery(id="q-1", body=QUERY)
    execution = simulator.trigger(query, channels=frozenset(), symbol="BTC")
    [frame] = SSEDecoder().feed(stream_frame(version, simulator.firing(query, execution)))  # type: ignore[arg-type]
    event = normalize_sse(frame.event, frame.id, frame.data)
    assert event is not None
    assert (event.event_id, event.event_type, event.status, event.symbol) == (
        execution["id"],
        "query.triggered",
        "triggered",
        "BTC",
    )
