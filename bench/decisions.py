"""Benchmark: rules-decider latency, policy + ledger overhead per event, replay rate.

    .venv/bin/python -m bench.decisions [--events 10000]

1. ``decide`` of the rules decider, the built-in announcement and a two-rule route with templates.
2. The pipeline per event on the in-memory twin (route, envelope, decision, verdict, ledger intent
   and result, run record) against a bare call of the same no-op adapter: the overhead of policy
   + ledger in CPU, without I/O.
3. Replay over a SQLite store holding ``--events`` recorded runs (built by the real worker):
   events re-decided per second, reading each event's record from disk.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers import kinds, make_event, raw_delivery

from autorunner import logs
from autorunner.adapters.base import Sending, already_sending
from autorunner.adapters.notify import NotifyAdapter
from autorunner.backends import open_backends
from autorunner.deciders.rules import RulesDecider, first_rule
from autorunner.decision import Action
from autorunner.envelope import build_envelope
from autorunner.events import Event
from autorunner.pipeline import Pipeline
from autorunner.policy import ActionTemplate, Policy, Route, Rule, default_policy
from autorunner.replay import replay
from autorunner.store.memory import MemoryStore
from bench import worker as worker_bench
from bench.calibrate import python_loop_seconds

RULES = Route(
    name="btc",
    objective="o",
    allowed_actions=("notify",),
    rules=(
        Rule(when={"status": "stopped"}, actions=()),
        Rule(
            actions=(
                ActionTemplate(
                    step="notify",
                    kind="notify",
                    params={"text": "BTC ${title} for ${query_id}", "tags": ["${symbol}"]},
                ),
            )
        ),
    ),
)


def per_call_us(fn: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


class Silent(NotifyAdapter):
    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        return {"delivered": True}


async def pipeline_overhead(n: int) -> tuple[float, float]:
    store = MemoryStore()
    adapter = Silent()
    pipeline = Pipeline(
        ledger=store,
        flags=store,
        approvals=store,
        policy=default_policy(),
        deciders={"rules": RulesDecider()},
        adapters={"notify": adapter},
    )
    for i in range(n):
        await store.insert_event(make_event(f"e{i}", symbol="BTC"), raw_delivery())
    leased = [await store.acquire(f"e{i}", owner="w", lease=60) for i in range(n)]
    started = time.perf_counter()
    for lease in leased:
        assert lease is not None
        await pipeline.run(lease)
    full = (time.perf_counter() - started) / n * 1e6
    action = Action(step_id="notify", kind="notify", params={"text": "x"})
    event = make_event("e0")
    started = time.perf_counter()
    for i in range(n):
        await adapter.execute(
            action, effect_key=f"e{i}:notify", event=event, sending=already_sending
        )
    bare = (time.perf_counter() - started) / n * 1e6
    return full, bare


async def replay_rate(events: int) -> float:
    db = Path(tempfile.mkdtemp(prefix="autorunner-bench-")) / "replay.db"
    from autorunner.config import Settings  # noqa: PLC0415

    settings = Settings(queue_url=f"sqlite:///{db}", worker_concurrency=64, log_level="warning")
    await worker_bench.preload(settings, events)
    await worker_bench.drain(settings, events)
    backends = await open_backends(settings, create=False)
    stricter = Policy(
        routes=(Route(name="none", objective="o", allowed_actions=()),),
        default=default_policy().default,
    )
    deciders = {"rules": RulesDecider()}
    started = time.perf_counter()
    summaries = await backends.store.list_events(limit=events, since=0)
    changes = 0
    for summary in summaries:
        detail = await backends.store.get_event(summary.event_id)
        assert detail is not None
        result = await replay(detail, stricter, deciders, valuers=kinds("notify"))
        changes += result.change != "unchanged"
    elapsed = time.perf_counter() - started
    await backends.close()
    assert len(summaries) == events
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    logs.configure(level="warning")
    print(f"CPU yardstick {python_loop_seconds():.2f}s")
    event = make_event("e1", symbol="BTC", title="BTC > 100k")
    default_route = default_policy().default
    plain = build_envelope(event, default_route)
    templated = build_envelope(event, RULES)
    print(
        f"rules decider, built-in announcement: {per_call_us(lambda: first_rule(plain, default_route), 100_000):.1f} µs a decision"
    )
    print(
        f"rules decider, 2 rules + templates:   {per_call_us(lambda: first_rule(templated, RULES), 100_000):.1f} µs a decision"
    )
    full, bare = asyncio.run(pipeline_overhead(20_000))
    print(
        f"pipeline per event on the memory twin: {full:.1f} µs (the adapter call alone: {bare:.1f} µs; policy + ledger + record: {full - bare:.1f} µs)"
    )
    print(
        f"replay over {args.events:,} recorded runs on SQLite: {asyncio.run(replay_rate(args.events)):,.0f} events/s"
    )


if __name__ == "__main__":
    main()
