"""Benchmark: what an approval adds beyond the human, and what budget accounting costs.

    .venv/bin/python -m bench.approvals [--events 30] [--decisions 300]

1. Approval latency: ``autorunner serve`` (SQLite) with a route whose one ``http`` order is
   gated, a fake Bot API and a fake internal API served in this process. For each event, one at
   a time: the webhook is sent, the request message awaited, then a button is pressed (a
   ``callback_query`` update queued at the fake bot: t0) and the time until the order reaches
   the internal API (t1) is taken — long polling (``getUpdates``) and the webhook route
   (``POST /telegram/updates``) in turn. Median and p95 of t1 - t0.
2. Budget accounting: the ``llm`` decider with pydantic-ai's offline ``TestModel`` (no network,
   no latency), bare and under budgets (``deciders.budget``: a price lookup, one reservation and
   one settlement in the store), ``--decisions`` decisions one at a time on SQLite and on
   PostgreSQL (a fresh schema): the cost per decision is the difference of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from pydantic_ai.models.test import TestModel
from tests.backends import postgres_schema
from tests.fake_http import serving
from tests.fake_telegram import ApproversBot

from autorunner import logs
from autorunner.backends import open_backends
from autorunner.config import Settings
from autorunner.deciders.budget import BudgetedDecider
from autorunner.deciders.llm import LlmDecider
from autorunner.deciders.rules import RulesDecider
from autorunner.envelope import build_envelope
from autorunner.policy import LlmBudget, Route
from autorunner.prices import Prices, parse_prices
from autorunner.sim.sender import sample_event, signed_headers
from bench.calibrate import python_loop_seconds
from bench.ingest import SECRET, free_port, serve_cmd, server

POLICY = """
[approvers.desk]
chat_id = -1001
user_ids = [42]

[default]
allowed_actions = ["http"]
approval = { actions = ["http"], approvers = ["desk"] }
[[default.rules]]
actions = [{ step = "order", kind = "http", params = { endpoint = "orders", body = { notional_usd = 100 } } }]
"""


class Orders:
    """The internal API: when each order arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        key = dict(scope["headers"]).get(b"idempotency-key", b"").decode()
        self.arrived.setdefault(key, time.perf_counter())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def until(check: Any, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - the state lives in fakes served by this loop
            await asyncio.sleep(0.001)


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):.1f} ms, p95 {values[int(len(values) * 0.95) - 1]:.1f} ms"


async def approval_latency(events: int, tmp: Path, *, webhook: bool) -> list[float]:
    bot, orders = ApproversBot(), Orders()
    (tmp / "policy.toml").write_text(POLICY)
    port = free_port()
    async with serving(bot) as bot_base, serving(orders) as api_base:
        env = {
            **os.environ,
            "QUEUE_URL": f"sqlite:///{tmp / f'approvals-{webhook}.db'}",
            "AUTO_SECRET": SECRET,
            "PORT": str(port),
            "LOG_LEVEL": "warning",
            "RUNNER_POLICY": str(tmp / "policy.toml"),
            "HTTP_ENDPOINTS": f"orders={api_base}/orders",
            "TELEGRAM_BOT_TOKEN": "bench-bot",
            "TELEGRAM_API_URL": bot_base,
            "APPROVALS_POLL_SECONDS": "20",
            **({"TELEGRAM_WEBHOOK_SECRET": "bench-hook-0123456789"} if webhook else {}),
        }
        took = []
        base = f"http://127.0.0.1:{port}"
        with server(serve_cmd(), port, env):
            async with httpx2.AsyncClient(timeout=10) as client:
                for n in range(events):
                    event_id = f"ap-{n}"
                    body = httpx2.Request("POST", base, json=sample_event(event_id=event_id)).read()
                    headers = signed_headers(SECRET, body, event_id=event_id)
                    sent = await client.post(f"{base}/webhooks/auto", content=body, headers=headers)
                    assert sent.status_code == 202, sent.text
                    await until(lambda n=n: len(bot.sent) > n)
                    started = time.perf_counter()
                    update = bot.press(bot.sent[n], approve=True, user_id=42)
                    if webhook:
                        await client.post(
                            f"{base}/telegram/updates",
                            json=update,
                            headers={"x-telegram-bot-api-secret-token": "bench-hook-0123456789"},
                        )
                    await until(lambda e=event_id: f"{e}:order" in orders.arrived)
                    took.append((orders.arrived[f"{event_id}:order"] - started) * 1000)
    return took


async def budget_cost(decisions: int, settings: Settings) -> tuple[float, float]:
    """Median µs per decision: bare, and under budgets."""
    backends = await open_backends(settings)
    answer = {"actions": [{"step_id": "n", "kind": "notify", "params": {}}], "rationale": "r"}
    bare = LlmDecider(TestModel(custom_output_args=answer), label="test")
    route = Route(
        name="btc",
        objective="o",
        allowed_actions=("notify",),
        decider="llm",
        llm_budget=LlmBudget(per_decision_usd=0.05, per_day_usd=1_000_000),
    )
    budgeted = BudgetedDecider(
        bare, backends.store, Prices(parse_prices("test=0.15/0.60")), fallback=RulesDecider()
    )
    envelope = build_envelope(sample_event_as_event(), route)
    figures = []
    try:
        for decider in (bare, budgeted):
            for _ in range(20):
                await decider.decide(envelope, {}, route=route)
            took = []
            for _ in range(decisions):
                started = time.perf_counter()
                await decider.decide(envelope, {}, route=route)
                took.append((time.perf_counter() - started) * 1e6)
            figures.append(statistics.median(took))
    finally:
        await backends.close()
    return figures[0], figures[1]


def sample_event_as_event() -> Any:
    from tests.helpers import make_event  # noqa: PLC0415

    return make_event("bench-1")


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="autorunner-bench-approvals-"))
    print(f"CPU yardstick {python_loop_seconds():.2f}s")
    for webhook in (False, True):
        took = await approval_latency(args.events, tmp, webhook=webhook)
        how = "webhook" if webhook else "getUpdates long poll"
        print(f"approval latency ({how}, {args.events} events): {percentiles(took)}")
    sqlite = Settings(queue_url=f"sqlite:///{tmp / 'budget.db'}", log_level="warning")
    bare, budgeted = await budget_cost(args.decisions, sqlite)
    print(f"budget (SQLite): bare {bare:.0f} µs, budgeted {budgeted:.0f} µs per decision")
    with contextlib.suppress(Exception):
        async with postgres_schema() as url:
            cloud = Settings(
                runner_mode="cloud",
                queue_url="redis://127.0.0.1:6379/13",
                database_url=url,
                log_level="warning",
            )
            bare, budgeted = await budget_cost(args.decisions, cloud)
            print(
                f"budget (PostgreSQL): bare {bare:.0f} µs, budgeted {budgeted:.0f} µs per decision"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--decisions", type=int, default=300)
    logs.configure(level="warning")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
