"""A database made by an older version is migrated forward in place, data kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from autorunner.records import EffectIntent
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store import sqlite as sqlite_store
from tests.helpers import make_event, raw_delivery


async def test_a_version_1_database_is_upgraded_with_its_events_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    old = SqliteDatabase(path, migrations=sqlite_store.migrations()[:1])
    await old.open()
    await old.close()
    version_1_event = {k: v for k, v in make_event("kept").to_dict().items() if k != "delivery_id"}
    with sqlite3.connect(path) as conn:  # a row as version 1 wrote it
        conn.execute(
            "INSERT INTO events (event_id, event_type, channel, status, received_at, available_at,"
            " event_json, raw_json) VALUES ('kept', 'query.triggered', 'webhook', 'pending', 1, 1,"
            " ?, ?)",
            (orjson.dumps(version_1_event).decode(), orjson.dumps(raw_delivery()).decode()),
        )

    db = SqliteDatabase(path, migrations=sqlite_store.migrations())
    await db.open()
    store = sqlite_store.SqliteStore(db)
    try:
        assert [e.event_id for e in await store.list_events(limit=5)] == ["kept"]
        leased = await store.acquire("kept", owner="w", lease=30)
        assert leased is not None
        assert (leased.event, leased.generation) == (make_event("kept"), 1)
        await store.set_flag("paused", "x")
        intent = EffectIntent(
            effect_key="kept:n",
            event_id="kept",
            step_id="n",
            kind="notify",
            params={},
            route="r",
            budget=1,
        )
        assert (await store.begin_effect(intent)).proceed
    finally:
        await db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(sqlite_store.migrations()),)
