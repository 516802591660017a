"""The llm decider under enforced budgets, against an OpenAI-compatible fake over real HTTP and
the real stores: the last dollar raced for, an unpriced model refused, the rules as fallback,
invalid output bounded — every call's reported usage settled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from autorunner.clock import utc_day
from autorunner.deciders.budget import BudgetedDecider
from autorunner.deciders.llm import LlmDecider
from autorunner.deciders.rules import RulesDecider
from autorunner.envelope import build_envelope
from autorunner.errors import InvalidDecision
from autorunner.metrics import Metrics
from autorunner.policy import ActionTemplate, LlmBudget, Route, Rule
from autorunner.prices import Prices, parse_prices
from autorunner.queue.base import Queue
from autorunner.store.base import StoreBackend
from tests.fake_http import serving
from tests.fake_llm import FakeModel
from tests.helpers import FakeClock, make_event

Backends = tuple[StoreBackend, Queue]
NOTIFY = {
    "actions": [{"step_id": "n", "kind": "notify", "params": {"text": "hi"}}],
    "rationale": "r",
}
PRICED = "fake-1=1000/1000"  # a token costs a tenth of a cent: one fake call (150 tokens) $0.15


def route(budget: LlmBudget | None, **changes: Any) -> Route:
    return Route(
        name="btc",
        objective="Decide",
        allowed_actions=("notify",),
        decider="llm",
        llm_budget=budget,
        rules=(Rule(actions=(ActionTemplate(step="rule", kind="notify"),)),),
        **changes,
    )


@contextlib.asynccontextmanager
async def budgeted(
    model_app: FakeModel,
    store: StoreBackend,
    clock: FakeClock,
    *,
    prices: str = PRICED,
    **limits: Any,
) -> AsyncIterator[BudgetedDecider]:
    """The budgeted decider over ``model_app``, served over real HTTP while the block runs."""
    async with serving(model_app) as base, httpx2.AsyncClient() as http:
        yield _decider(f"{base}/v1", http, store, clock, prices=prices, **limits)


def _decider(
    base: str,
    http: httpx2.AsyncClient,
    store: StoreBackend,
    clock: FakeClock,
    *,
    prices: str,
    **limits: Any,
) -> BudgetedDecider:
    model = OpenAIChatModel(
        "fake-1", provider=OpenAIProvider(base_url=base, api_key="k", http_client=http)
    )
    return BudgetedDecider(
        LlmDecider(
            model,
            label="fake",
            total_tokens_limit=10_000,
            output_retries=limits.pop("output_retries", 1),
        ),
        store,
        Prices(parse_prices(prices)),
        fallback=RulesDecider(),
        metrics=Metrics(),
        clock=clock,
        **limits,
    )


async def decide(decider: BudgetedDecider, on: Route, event_id: str = "e1") -> Any:
    envelope = build_envelope(make_event(event_id), on)
    return await decider.decide(envelope, {}, route=on)


async def test_a_burst_racing_for_the_last_dollar_never_spends_past_it(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    model = FakeModel(lambda event_id, n: NOTIFY)
    on = route(LlmBudget(per_decision_usd=0.2, per_day_usd=1.0))
    async with budgeted(model, store, clock) as decider:
        results = await asyncio.gather(
            *(decide(decider, on, f"e{n}") for n in range(20)), return_exceptions=True
        )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InvalidDecision)]
    assert len(made) + len(refused) == 20
    assert 5 <= len(made) <= 6  # five reservations of $0.20 fit; a sixth once some settled
    assert model.requests == len(made)  # a refused decision never reached the model
    assert all(
        "LLM budget: the route:btc budget for today would be passed" in str(r) for r in refused
    )
    spend = {v.scope: v for v in await store.spend_of(utc_day(clock()))}
    assert spend["route:btc"].spent_micro_usd == len(made) * 150_000 <= 1_000_000
    assert (spend["route:btc"].reserved_micro_usd, spend["route:btc"].reserved_tokens) == (0, 0)
    budget = made[0].trace["budget"]
    assert (budget["tokens_cap"], budget["reserved_usd"], budget["spent_usd"]) == (200, 0.2, 0.15)


async def test_an_unpriced_model_is_refused_under_a_usd_budget_and_never_asked(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    model = FakeModel(lambda event_id, n: NOTIFY)
    async with budgeted(model, store, clock, prices="", day_usd=5.0) as daily:
        with pytest.raises(
            InvalidDecision, match="model 'fake-1' has no known price and a USD budget applies"
        ):
            await decide(daily, route(None))
    async with budgeted(model, store, clock, prices="") as per_route:
        with pytest.raises(InvalidDecision, match="no known price"):
            await decide(per_route, route(LlmBudget(per_decision_usd=0.05)))
        tokens_only = await decide(
            per_route, route(LlmBudget(per_decision_tokens=500, per_day_tokens=1000))
        )
    assert model.requests == 1  # only the decision no USD budget applied to
    assert tokens_only.trace["budget"]["priced"] is False
    [counted] = [v for v in await store.spend_of(utc_day(clock())) if v.scope == "route:btc"]
    assert (counted.spent_tokens, counted.spent_micro_usd) == (150, 0)


async def test_over_budget_the_routes_rules_decide_when_it_says_so(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    model = FakeModel(lambda event_id, n: NOTIFY)
    on = route(LlmBudget(per_day_usd=0.1, on_exceeded="rules"))
    async with budgeted(model, store, clock) as decider:
        decision = await decide(decider, on)
    assert model.requests == 0  # 10,000 tokens at $0.001 cannot be reserved under $0.10
    assert decision.decider == "rules"
    assert decision.trace["budget"]["fallback"] == "rules"


async def test_output_that_stays_invalid_ends_after_the_bounded_retries_and_is_paid_for(
    backends: Backends, clock: FakeClock
) -> None:
    store, _ = backends
    model = FakeModel(lambda event_id, n: {"actions": "sell everything"})
    async with budgeted(model, store, clock, output_retries=2) as decider:
        with pytest.raises(InvalidDecision, match="model output unusable") as refused:
            await decide(decider, route(LlmBudget(per_decision_usd=1.0, per_day_usd=5.0)))
    assert model.requests == 3  # the first answer and two retries, then a denial
    assert refused.value.trace["usage"] == {
        "requests": 3,
        "input_tokens": 360,
        "output_tokens": 90,
    }
    [counted] = [v for v in await store.spend_of(utc_day(clock())) if v.scope == "route:btc"]
    assert counted.spent_micro_usd == 3 * 150_000
