"""The deciders a process may use, built from settings: ``rules`` always, ``llm`` when
``LLM_MODEL`` is set (pydantic-ai imported only then), held to its budgets when a store is at
hand (``budgeted``), and checked against the policy at start-up."""

from __future__ import annotations

from collections.abc import Mapping

import httpx2

from autorunner.auto_client import AutoClient
from autorunner.clock import Clock, system_clock
from autorunner.config import Settings
from autorunner.context import AutoContext
from autorunner.deciders import Decider
from autorunner.deciders.rules import RulesDecider
from autorunner.errors import ConfigError
from autorunner.metrics import Metrics
from autorunner.policy import Policy
from autorunner.store.base import Spend
from autorunner.tracing import OFF, OtelTracing, Tracing


def deciders(
    settings: Settings | None = None,
    http: httpx2.AsyncClient | None = None,
    auto: AutoClient | None = None,
    tracing: Tracing = OFF,
) -> dict[str, Decider]:
    """The deciders a route may name: ``rules`` always, ``llm`` when ``LLM_MODEL`` is set."""
    found: dict[str, Decider] = {"rules": RulesDecider()}
    if settings is not None and settings.llm_model:
        found["llm"] = build_llm_decider(settings, http, auto, tracing)
    return found


def budgeted(
    found: dict[str, Decider],
    settings: Settings,
    spend: Spend,
    metrics: Metrics | None = None,
    clock: Clock = system_clock,
) -> dict[str, Decider]:
    """``found`` with its ``llm`` decider held to its budgets (``deciders.budget``): every
    decision it makes counts, whether a worker or the console's replay asks."""
    llm = found.get("llm")
    if llm is None:
        return found
    from autorunner.deciders.budget import BudgetedDecider  # noqa: PLC0415 - only with LLM_MODEL
    from autorunner.deciders.llm import LlmDecider  # noqa: PLC0415
    from autorunner.prices import Prices, parse_prices  # noqa: PLC0415

    if not isinstance(llm, LlmDecider):
        return found
    return {
        **found,
        "llm": BudgetedDecider(
            llm,
            spend,
            Prices(parse_prices(settings.llm_prices)),
            day_usd=settings.llm_budget_day_usd,
            day_tokens=settings.llm_budget_day_tokens,
            fallback=found["rules"],
            metrics=metrics,
            clock=clock,
        ),
    }


def build_llm_decider(
    settings: Settings,
    http: httpx2.AsyncClient | None,
    auto: AutoClient | None,
    tracing: Tracing = OFF,
) -> Decider:
    """An OpenAI-compatible model (hosted or self-hosted) behind the ``llm`` decider."""
    from pydantic_ai.models.openai import OpenAIChatModel  # noqa: PLC0415 - only with LLM_MODEL
    from pydantic_ai.providers.openai import OpenAIProvider  # noqa: PLC0415
    from pydantic_ai.settings import ModelSettings  # noqa: PLC0415

    from autorunner.deciders.llm import LlmDecider  # noqa: PLC0415

    assert settings.llm_model is not None  # noqa: S101 - checked by the caller
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused"
    provider = OpenAIProvider(base_url=settings.llm_base_url, api_key=key, http_client=http)
    sessions = AutoContext(auto).latest_session if auto is not None else None
    return LlmDecider(
        OpenAIChatModel(settings.llm_model, provider=provider),
        label=f"openai-compatible:{settings.llm_model}",
        settings=ModelSettings(
            temperature=settings.llm_temperature, max_tokens=settings.llm_max_tokens
        ),
        request_limit=settings.llm_request_limit,
        total_tokens_limit=settings.llm_total_tokens_limit,
        output_retries=settings.llm_output_retries,
        sessions=sessions,
        tracer_provider=tracing.provider if isinstance(tracing, OtelTracing) else None,
    )


def check_deciders(policy: Policy, available: Mapping[str, Decider]) -> None:
    """Every route's decider must exist at start-up, not fail on the first event."""
    where = f"{policy.source}: " if policy.source else ""
    for route in (*policy.routes, policy.default):
        if route.decider not in available:
            raise ConfigError(
                f"{where}route {route.name!r} uses decider {route.decider!r}, which is not"
                " configured (set LLM_MODEL)"
            )
