"""The hot statements on PostgreSQL never plan a read of the unfinished events' index. A burst
after a quiet hour is a backlog the planner's statistics have not counted yet; trusting them, it
read every unfinished event through that index for each batch of leases or run records
(``bench.cost_model`` measured 4 ms a batch, docs/benchmarks.md, issue 16). A sequential scan,
which it may still choose for a small table, it costs by the table's actual size."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from autorunner.records import RunRecord
from autorunner.store.postgres import PostgresStore, migrations
from autorunner.store.postgres_statements import (
    ACQUIRE_MANY,
    FINISH_DONE_MANY,
    PIN_AND_INSERT_EFFECT_MANY,
)
from tests.backends import postgres_schema
from tests.helpers import make_event, raw_delivery

BEFORE = 8
"""The schema's versions before the unfinished events' index stopped naming ``status``."""


async def _plans(store: PostgresStore, ids: list[str]) -> dict[str, str]:
    """How PostgreSQL would run each hot many-row statement over ``ids`` (EXPLAIN)."""
    now = time.time()
    decision: dict[str, list[str]] = {"actions": []}
    documents = {
        "lease": (ACQUIRE_MANY, [["w", now + 30, i, now] for i in ids]),
        "pin and intent": (
            PIN_AND_INSERT_EFFECT_MANY,
            [
                [decision, i, "w", 1, f"{i}:n", i, "n", "notify", "pending", {}, now, now, None]
                for i in ids
            ],
        ),
        "run record": (
            FINISH_DONE_MANY,
            [[now, None, "default", i, "w", i, 1, now, {}] for i in ids],
        ),
    }
    plans = {}
    async with store.db.tx() as conn:
        for name, (query, rows) in documents.items():
            cur = await conn.execute(b"EXPLAIN " + query.encode(), (orjson.dumps(rows).decode(),))
            plans[name] = "\n".join(str(row[0]) for row in await cur.fetchall())
    return plans


@pytest.mark.parametrize("schema", ["current", "before issue 16's index"])
async def test_a_backlog_the_statistics_have_not_counted_is_not_read_through_the_unfinished_index(
    schema: str,
) -> None:
    async with postgres_schema() as url:
        scripts = migrations() if schema == "current" else migrations()[:BEFORE]
        store = await PostgresStore.open(url, scripts=scripts)
        try:
            async with store.db.tx() as conn:
                await conn.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
            # A quiet hour: a few events, all done, and the planner's statistics say so.
            quiet = [f"q{n:03}" for n in range(40)]
            for event_id in quiet:
                await store.insert_event(make_event(event_id), raw_delivery())
                await store.acquire(event_id, owner="w", lease=30)
                record = RunRecord(
                    event_id=event_id, attempt=1, outcome="done", started_at=0, finished_at=1
                )
                await store.finish(record, owner="w")
            async with store.db.tx() as conn:
                await conn.execute("ANALYZE events")
            # The burst: thousands of pending events the statistics have not seen.
            burst = [f"b{n:04}" for n in range(3000)]
            await asyncio.gather(
                *(store.insert_event(make_event(i), raw_delivery()) for i in burst)
            )
            plans = await _plans(store, burst[:30])
        finally:
            await store.close()
    scanned = {name for name, plan in plans.items() if "events_unfinished" in plan}
    if schema == "current":
        assert scanned == set(), plans
    else:  # what the test guards against: the old index made the statistics' guess the plan
        assert scanned, plans
