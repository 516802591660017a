"""How PostgreSQL runs the hot many-row statements when a burst follows a quiet hour: a backlog
its statistics have not counted yet (docs/benchmarks.md, issue 16).

- They never read the unfinished events' index. Trusting the statistics, the planner read every
  unfinished event through it for each batch of leases or run records (``bench.cost_model``
  measured 4 ms a batch).
- They read the rows they change by primary key, not the whole table: PostgreSQL takes a JSON
  array for 100 rows whatever it holds, and joined it to a table of a few thousand rows by
  reading that table whole for each batch (1.3 ms a batch of 30 over 10,000 effects, against 0.4 by key)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from autorunner.records import EffectIntent, RunRecord
from autorunner.store.postgres import PostgresStore, migrations
from autorunner.store.postgres_statements import (
    ACQUIRE_MANY,
    FINISH_DONE_MANY,
    FINISH_EFFECT_MANY,
    PIN_AND_INSERT_EFFECT_MANY,
    PIN_DECISION_MANY,
)
from tests.backends import postgres_schema
from tests.helpers import make_event, raw_delivery

BEFORE = 8
"""The schema's versions before the unfinished events' index stopped naming ``status``."""

UNKEYED = {  # what the test guards against: the many-row forms before they named their keys
    "lease": "UPDATE events SET status = 'running', attempts = attempts + 1, lease_owner = r->>0,"
    " lease_until = (r->>1)::float8 FROM jsonb_array_elements(%s::jsonb) AS r"
    " WHERE event_id = r->>2 AND (status = 'pending'"
    " OR (status = 'running' AND lease_until <= (r->>3)::float8))",
    "effect result": "UPDATE effects SET status = r->>0, result_json = r->1,"
    " updated_at = (r->>2)::float8 FROM jsonb_array_elements(%s::jsonb) AS r"
    " WHERE effect_key = r->>3",
}


async def _plans(
    store: PostgresStore, ids: list[str], forms: dict[str, str] | None = None
) -> dict[str, str]:
    """How PostgreSQL would run each hot many-row statement over ``ids`` (EXPLAIN), or the
    statement ``forms`` gives in its place."""
    now = time.time()
    decision: dict[str, list[str]] = {"actions": []}
    documents = {
        "lease": (ACQUIRE_MANY, [["w", now + 30, i, now] for i in ids]),
        "pin": (PIN_DECISION_MANY, [[decision, i, "w", 1] for i in ids]),
        "pin and intent": (
            PIN_AND_INSERT_EFFECT_MANY,
            [
                [decision, i, "w", 1, f"{i}:n", i, "n", "notify", "pending", {}, now, now, None]
                for i in ids
            ],
        ),
        "effect result": (FINISH_EFFECT_MANY, [["done", {}, now, f"{i}:n"] for i in ids]),
        "run record": (
            FINISH_DONE_MANY,
            [[now, None, "default", i, "w", i, 1, now, {}] for i in ids],
        ),
    }
    plans = {}
    async with store.db.tx() as conn:
        for name, (query, rows) in documents.items():
            text = (forms or {}).get(name, query)
            cur = await conn.execute(b"EXPLAIN " + text.encode(), (orjson.dumps(rows).decode(),))
            plans[name] = "\n".join(str(row[0]) for row in await cur.fetchall())
    return plans


async def _burst(
    scripts: list[str] | tuple[str, ...], forms: dict[str, str] | None = None
) -> dict[str, str]:
    """The plans over a burst of pending events, each with an effect begun, after a quiet
    hour the planner's statistics have counted."""
    async with postgres_schema() as url:
        store = await PostgresStore.open(url, scripts=scripts)
        try:
            async with store.db.tx() as conn:
                await conn.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
                await conn.execute("ALTER TABLE effects SET (autovacuum_enabled = false)")
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
                await conn.execute("ANALYZE events, effects")
            # The burst: thousands of pending events the statistics have not seen.
            burst = [f"b{n:04}" for n in range(3000)]
            await asyncio.gather(
                *(store.insert_event(make_event(i), raw_delivery()) for i in burst)
            )
            await asyncio.gather(
                *(
                    store.begin_effect(
                        EffectIntent(
                            effect_key=f"{i}:n", event_id=i, step_id="n", kind="n", params={}
                        )
                    )
                    for i in burst
                )
            )
            return await _plans(store, burst[:30], forms)
        finally:
            await store.close()


@pytest.mark.parametrize("schema", ["current", "before issue 16's index"])
async def test_a_backlog_the_statistics_have_not_counted_is_not_read_through_the_unfinished_index(
    schema: str,
) -> None:
    plans = await _burst(migrations() if schema == "current" else migrations()[:BEFORE])
    scanned = {name for name, plan in plans.items() if "events_unfinished" in plan}
    if schema == "current":
        assert scanned == set(), plans
    else:  # what the test guards against: the old index made the statistics' guess the plan
        assert scanned, plans


@pytest.mark.parametrize("forms", ["current", "before they named their keys"])
async def test_a_batch_reads_the_rows_it_changes_by_key_not_the_whole_table(forms: str) -> None:
    plans = await _burst(migrations(), None if forms == "current" else UNKEYED)
    scanned = {name for name, plan in plans.items() if "Seq Scan on" in plan}
    if forms == "current":
        assert scanned == set(), plans
    else:
        assert scanned == set(UNKEYED), plans
