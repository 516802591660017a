"""The ``llm`` decider under enforced budgets: per decision, per route per UTC day and global per
day, in USD and in tokens (``route.llm_budget``, ``LLM_BUDGET_DAY_USD``/``_TOKENS``).

Before the model is called, the most the decision may cost is reserved in the store against
every budget that applies, atomically across workers (``Spend.reserve_spend``): its token cap
(the decider's ``LLM_TOTAL_TOKENS_LIMIT``, lowered by ``per_decision_tokens`` and by as many
tokens as ``per_decision_usd`` surely pays for at the dearer of the model's two prices) priced
at that dearer price. The cap is the run's token limit, so retries, output retries and tool
calls all count in it. After the call — a failed one too — the reservation is settled with the
provider's reported usage. A budget that would pass its limit denies the decision with the
reason (or, with ``on_exceeded = "rules"``, the route's rules decide instead); a model that
cannot be priced is refused whenever a USD budget applies: fail closed, never let through.

Known bound: the model library checks the token limit after each response, so the response
that crosses the cap is billed in full; the day's spend can pass a limit by at most that one
response. A process killed between reserve and settle leaves its reservation held for the rest
of the day (spend is over-counted, never under-counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import structlog
from pydantic_ai.usage import RunUsage

from autorunner.clock import Clock, system_clock, utc_day
from autorunner.deciders import Decider
from autorunner.deciders.llm import LlmDecider
from autorunner.decision import Decision
from autorunner.envelope import Envelope
from autorunner.errors import InvalidDecision, Unavailable
from autorunner.metrics import Metrics
from autorunner.policy import Route
from autorunner.prices import Prices
from autorunner.records import SpendClaim
from autorunner.store.base import Spend

log = structlog.get_logger("autorunner.budget")


def _micro(usd: float | None) -> int | None:
    return None if usd is None else round(usd * 1_000_000)


class BudgetedDecider:
    """``llm`` within its budgets; see the module docstring."""

    name = "llm"

    def __init__(
        self,
        inner: LlmDecider,
        spend: Spend,
        prices: Prices,
        *,
        day_usd: float | None = None,
        day_tokens: int | None = None,
        fallback: Decider | None = None,
        metrics: Metrics | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._inner = inner
        self._spend = spend
        self._prices = prices
        self._day_usd = day_usd
        self._day_tokens = day_tokens
        self._fallback = fallback
        self._metrics = metrics
        self._clock = clock

    async def decide(
        self, envelope: Envelope, context: dict[str, Any], *, route: Route
    ) -> Decision:
        budget = route.llm_budget
        model = self._inner.model_name
        price = self._prices.of(model)
        usd_applies = self._day_usd is not None or (
            budget is not None and (budget.per_decision_usd or budget.per_day_usd) is not None
        )
        if price is None and usd_applies:
            raise InvalidDecision(
                f"model {model!r} has no known price and a USD budget applies: refused"
                " (give it one in LLM_PRICES)"
            )
        cap = self._inner.total_tokens_limit
        if budget is not None and budget.per_decision_tokens is not None:
            cap = min(cap, budget.per_decision_tokens)
        if budget is not None and budget.per_decision_usd is not None and price is not None:
            cap = min(cap, price.tokens_for(_micro(budget.per_decision_usd) or 0))
        reserved = price.micro_usd_at_most(cap) if price is not None else 0
        claims = [
            SpendClaim(
                scope="global",
                micro_usd=reserved,
                tokens=cap,
                limit_micro_usd=_micro(self._day_usd),
                limit_tokens=self._day_tokens,
            ),
            SpendClaim(
                scope=f"route:{route.name}",
                micro_usd=reserved,
                tokens=cap,
                limit_micro_usd=_micro(budget.per_day_usd) if budget else None,
                limit_tokens=budget.per_day_tokens if budget else None,
            ),
        ]
        day = utc_day(self._clock())
        refused = await self._spend.reserve_spend(day, claims) if cap > 0 else "per decision"
        if refused is not None:
            return await self._over(envelope, context, route, refused)
        usage = RunUsage()
        try:
            decision = await self._inner.decide(
                envelope, context, route=route, tokens_limit=cap, usage=usage
            )
        finally:
            spent = price.micro_usd(usage.input_tokens, usage.output_tokens) if price else 0
            try:
                await asyncio.shield(
                    self._spend.settle_spend(
                        day, claims, micro_usd=spent, tokens=usage.total_tokens
                    )
                )
            except Unavailable as exc:  # the decision was paid for: keep it; the reservation
                log.warning(  # stays held for the day (over-counted, never under)
                    "budget.not_settled", route=route.name, spent=spent, error=str(exc)
                )
            if self._metrics is not None:
                self._metrics.llm_spend.labels(route.name).inc(spent / 1_000_000)
        shown = {
            "model": model,
            "tokens_cap": cap,
            "reserved_usd": reserved / 1_000_000,
            "spent_usd": spent / 1_000_000,
            "priced": price is not None,
        }
        return dataclasses.replace(decision, trace={**(decision.trace or {}), "budget": shown})

    async def _over(
        self, envelope: Envelope, context: dict[str, Any], route: Route, scope: str
    ) -> Decision:
        budget = route.llm_budget
        what = (
            "its per-decision budget allows no tokens"
            if scope == "per decision"
            else (f"the {scope} budget for today would be passed")
        )
        reason = f"LLM budget: {what}"
        log.warning("budget.exceeded", route=route.name, scope=scope)
        if budget is not None and budget.on_exceeded == "rules" and self._fallback is not None:
            decision = await self._fallback.decide(envelope, context, route=route)
            return dataclasses.replace(
                decision,
                trace={
                    **(decision.trace or {}),
                    "budget": {"refused": reason, "fallback": "rules"},
                },
            )
        raise InvalidDecision(reason, trace={"budget": {"refused": reason}})
