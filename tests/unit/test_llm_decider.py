"""The llm decider with pydantic-ai's own offline models: proposals, traces, invalid output."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from autorunner.adapters.base import DeliveryMode, Sending
from autorunner.adapters.exchange import ExchangeAdapter
from autorunner.adapters.http import HttpAdapter
from autorunner.deciders.llm import LlmDecider
from autorunner.decision import Action
from autorunner.envelope import build_envelope
from autorunner.errors import InvalidDecision
from autorunner.events import Event
from autorunner.notional import moves_no_money
from autorunner.pipeline import Pipeline
from autorunner.policy import Constraints, Policy, Route
from autorunner.store.memory import MemoryStore
from tests.helpers import make_event, raw_delivery

ROUTE = Route(
    name="desk",
    objective="Decide",
    allowed_actions=("notify", "exchange", "http"),
    decider="llm",
    constraints=Constraints(max_notional_usd=100, max_execution_seconds=0.3, max_attempts=1),
)


def answering(args: dict[str, Any]) -> FunctionModel:
    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(tool_name=info.output_tools[0].name, args=args)])

    return FunctionModel(reply)


async def test_the_models_proposal_becomes_a_decision_with_its_trace() -> None:
    decider = LlmDecider(
        answering(
            {
                "actions": [{"step_id": "n", "kind": "notify", "params": {"text": "hi"}}],
                "rationale": "because",
            }
        ),
        label="function:test",
    )
    envelope = build_envelope(make_event("e1"), ROUTE)
    decision = await decider.decide(envelope, {"query": None}, route=ROUTE)
    assert decision.actions == (Action(step_id="n", kind="notify", params={"text": "hi"}),)
    assert (decision.decider, decision.version, decision.rationale) == (
        "llm",
        "function:test",
        "because",
    )
    assert decision.trace is not None
    assert '"eventId": "e1"' in decision.trace["prompt"]
    assert decision.trace["raw_output"]["rationale"] == "because"


async def test_output_that_fails_the_schema_is_an_invalid_decision() -> None:
    decider = LlmDecider(answering({"actions": "sell everything"}), label="function:bad")
    with pytest.raises(InvalidDecision, match="model output unusable"):
        await decider.decide(build_envelope(make_event("e1"), ROUTE), {}, route=ROUTE)


async def test_pydantic_ai_test_model_runs_offline_and_its_output_becomes_the_decision() -> None:
    answer = {
        "actions": [{"step_id": "tell", "kind": "notify", "params": {"text": "t"}}],
        "rationale": "test",
    }
    decider = LlmDecider(TestModel(custom_output_args=answer), label="test")
    decision = await decider.decide(build_envelope(make_event("e1"), ROUTE), {}, route=ROUTE)
    assert decision.actions == (Action(step_id="tell", kind="notify", params={"text": "t"}),)
    assert (decision.decider, decision.version, decision.rationale) == ("llm", "test", "test")


class Recording:
    kind = "notify"
    delivery: DeliveryMode = "at_most_once"
    notional = staticmethod(moves_no_money)
    waits_to_send = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        self.calls.append(effect_key)
        return {}


async def run_with(model: FunctionModel) -> tuple[dict[str, Any], Recording]:
    store = MemoryStore()
    adapter = Recording()
    async with httpx2.AsyncClient() as http:
        pipeline = Pipeline(
            ledger=store,
            flags=store,
            approvals=store,
            policy=Policy(routes=(), default=ROUTE),
            deciders={"llm": LlmDecider(model, label="function:test")},
            adapters={
                "notify": adapter,
                "exchange": ExchangeAdapter(),
                # Nothing listens there: a call the verdict let through would fail the run.
                "http": HttpAdapter(http=http, endpoints={"orders": "http://127.0.0.1:9/orders"}),
            },
        )
        await store.insert_event(make_event("e1"), raw_delivery())
        leased = await store.acquire("e1", owner="w", lease=30)
        assert leased is not None
        attempt = await pipeline.run(leased)
    return attempt.record.to_dict() | {"error": attempt.error}, adapter


async def test_an_action_outside_the_allowed_ones_or_over_the_cap_is_denied_and_nothing_runs() -> (
    None
):
    record, adapter = await run_with(
        answering(
            {
                "actions": [
                    {"step_id": "tell", "kind": "telegram", "params": {"chat": "desk"}},
                    {
                        "step_id": "big",
                        "kind": "exchange",
                        "params": {"symbol": "BTC/USDT", "side": "buy", "amount": 1, "price": 1000},
                    },
                ],
                "rationale": "yolo",
            }
        )
    )
    assert adapter.calls == []
    assert record["effects"] == []
    assert [d["reason"] for d in record["verdict"]["denied"]] == [
        "action 'telegram' not allowed by route 'desk'",
        "notional 1000 USD exceeds the route's cap of 100 USD",
    ]
    assert record["decision"]["trace"]["raw_output"]["rationale"] == "yolo"


async def test_a_model_that_forgets_the_canonical_amount_field_is_denied_not_executed() -> None:
    record, _ = await run_with(
        answering(
            {
                "actions": [
                    {
                        "step_id": "order",
                        "kind": "http",
                        "params": {"endpoint": "orders", "body": {"amount_usd": 100_000}},
                    },
                    {
                        "step_id": "beside",
                        "kind": "http",
                        "params": {"endpoint": "orders", "notional_usd": 50, "body": {}},
                    },
                    {
                        "step_id": "buy",
                        "kind": "exchange",
                        "params": {"symbol": "BTC/USDT", "side": "buy", "amount": 10},
                    },
                ],
                "rationale": "size it big",
            }
        )
    )
    assert record["effects"] == []
    assert record["verdict"]["allowed"] == []
    reasons = [d["reason"] for d in record["verdict"]["denied"]]
    assert reasons[0].startswith("notional cannot be determined (endpoint 'orders' carries")
    assert reasons[1].startswith("http action has unknown param(s) 'notional_usd'")
    assert reasons[2].startswith("notional cannot be determined (a market order without a price)")


async def test_an_invalid_model_answer_is_a_refused_verdict_not_an_effect() -> None:
    record, adapter = await run_with(answering({"nonsense": True}))
    assert adapter.calls == []
    assert (record["verdict"]["allowed"], record["verdict"]["denied"]) == ([], [])
    assert record["verdict"]["refused"].startswith("invalid decision: model output unusable")
    assert record["decision"]["invalid"].startswith("model output unusable")
    assert record["decision"]["trace"]["prompt"]
    assert record["error"] is None


async def test_the_routes_time_limit_bounds_a_slow_model() -> None:
    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(5)
        raise AssertionError("unreachable")

    record, adapter = await run_with(FunctionModel(slow))
    assert adapter.calls == []
    assert "timed out after 0.3s" in str(record["error"])
