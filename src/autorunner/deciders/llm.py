"""The ``llm`` decider: a model proposes actions as structured output, through pydantic-ai.

Any provider pydantic-ai speaks can sit behind it; the composition root builds an
OpenAI-compatible one (hosted or self-hosted) from settings. The model sees the instruction
envelope and the fetched context, may call one tool — ``fetch_session``, reading the query's LLM
session output through ``AutoClient`` — and must answer with the ``LlmOutput`` schema. It is
told the allowed actions, but the policy, not the model, decides: anything outside them is
denied by the verdict. Output that fails the schema becomes ``InvalidDecision`` (a denied
verdict); a model that cannot be reached is a transient error (the job retries). Request and
token limits apply to every run, and the route's time limit bounds it from outside. The prompt,
model, parameters, raw output and usage are kept in the decision's ``trace``. With a tracer
provider, pydantic-ai's own instrumentation adds the model calls to the event's trace (the GenAI
semantic conventions: model, tokens in and out, cost when the price is known), without the
prompt's content: that stays in the audit record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, Field
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelHTTPError,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.models import Model
from pydantic_ai.models.instrumented import InstrumentationSettings, InstrumentedModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RunUsage, UsageLimits

from autorunner.decision import Action, Decision
from autorunner.envelope import Envelope
from autorunner.errors import InvalidDecision, TransientError
from autorunner.policy import Route

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SessionReader = Callable[[str], Awaitable[dict[str, Any] | None]]

INSTRUCTIONS = """\
You decide what an automated trading-operations runner does about one trigger from Elfa Auto.
You receive the instruction envelope (objective, allowedActions, constraints, trigger) and the
context fetched for it. Propose zero or more actions. Use only kinds listed in allowedActions:
anything else is refused. Respect every constraint (riskMode, maxNotionalUsd). An amount counts
only where its kind carries it, and an order whose amount cannot be read is refused: an exchange
order gives symbol (a USD-quoted pair like BTC/USDT), side, type, amount and price; an http call
gives endpoint and a body with the order's USD value as body.notional_usd. Give each action a
short unique step_id. Explain briefly why.
"""


class ProposedAction(BaseModel):
    step_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class LlmOutput(BaseModel):
    """What the model must answer with."""

    actions: list[ProposedAction] = Field(default_factory=list, max_length=10)
    rationale: str = Field(max_length=2000)


class LlmDecider:
    """Decides with a model; see the module docstring."""

    name = "llm"

    def __init__(
        self,
        model: Model,
        *,
        label: str,
        settings: ModelSettings | None = None,
        request_limit: int = 3,
        total_tokens_limit: int = 20_000,
        output_retries: int = 1,
        sessions: SessionReader | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._label = label
        self.model_name = model.model_name
        self.total_tokens_limit = total_tokens_limit
        self._settings = settings or ModelSettings()
        self._limits = UsageLimits(
            request_limit=request_limit, total_tokens_limit=total_tokens_limit
        )
        if tracer_provider is not None:
            settings_ = InstrumentationSettings(
                tracer_provider=tracer_provider, include_content=False
            )
            model = InstrumentedModel(model, settings_)
        self._agent: Agent[Envelope, LlmOutput] = Agent(
            model,
            name="autorunner",
            output_type=LlmOutput,
            instructions=INSTRUCTIONS,
            deps_type=Envelope,
            retries={"tools": 1, "output": output_retries},
        )
        if sessions is not None:
            reader = sessions

            @self._agent.tool
            async def fetch_session(ctx: RunContext[Envelope]) -> dict[str, Any] | None:
                """The latest LLM session output of the trigger's query (None when there is none)."""
                query_id = ctx.deps.query_id
                return await reader(query_id) if query_id else None

    async def decide(
        self,
        envelope: Envelope,
        context: dict[str, Any],
        *,
        route: Route,
        tokens_limit: int | None = None,
        usage: RunUsage | None = None,
    ) -> Decision:
        """Ask the model; ``tokens_limit`` lowers the run's token limit (a budget's), and
        ``usage`` is filled with every request's usage as it goes — retries and tool calls
        included, a run that fails too."""
        limits = self._limits
        if tokens_limit is not None and tokens_limit < (
            limits.total_tokens_limit or tokens_limit + 1
        ):
            limits = UsageLimits(
                request_limit=limits.request_limit, total_tokens_limit=tokens_limit
            )
        prompt = orjson.dumps(
            {"envelope": envelope.to_dict(), "context": context}, option=orjson.OPT_INDENT_2
        ).decode()
        trace: dict[str, Any] = {
            "model": self._label,
            "instructions": INSTRUCTIONS,
            "prompt": prompt,
            "settings": dict(self._settings),
            "limits": {
                "request_limit": limits.request_limit,
                "total_tokens_limit": limits.total_tokens_limit,
            },
        }
        usage = usage if usage is not None else RunUsage()
        try:
            result = await self._agent.run(
                prompt,
                deps=envelope,
                usage_limits=limits,
                model_settings=self._settings,
                usage=usage,
            )
        except (UnexpectedModelBehavior, UsageLimitExceeded) as exc:
            trace["usage"] = _usage(usage)
            raise InvalidDecision(f"model output unusable: {exc}", trace=trace) from exc
        except ModelHTTPError as exc:
            if exc.status_code >= 500 or exc.status_code == 429:
                raise TransientError(f"model unavailable ({exc.status_code})") from exc
            raise InvalidDecision(
                f"model refused the request ({exc.status_code})", trace=trace
            ) from exc
        except ModelAPIError as exc:
            raise TransientError(f"model unreachable: {type(exc).__name__}") from exc
        output = result.output
        trace["raw_output"] = output.model_dump(mode="json")
        trace["usage"] = _usage(usage)
        return Decision(
            actions=tuple(
                Action(step_id=a.step_id, kind=a.kind, params=a.params) for a in output.actions
            ),
            rationale=output.rationale,
            decider="llm",
            version=self._label,
            trace=trace,
        )


def _usage(usage: RunUsage) -> dict[str, int]:
    return {
        "requests": usage.requests,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }
