"""The SQLite writer's group commit: writes of one kind that meet in a commit run as one call,
and a failing group falls back to each write alone, so a bad write never fails its neighbours."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from autorunner.queue.sqlite import SqliteQueue
from autorunner.sqlite_outbox import SqliteOutbox
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store import sqlite as sqlite_store
from tests.helpers import make_event, raw_delivery

SCHEMA = "CREATE TABLE items (name TEXT PRIMARY KEY, size INTEGER NOT NULL CHECK (size > 0))"


class Inserts:
    """A ``together`` function inserting one row per argument, noting each call's arguments."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, conn: sqlite3.Connection, names: list[Any]) -> list[Any]:
        self.calls.append(list(names))
        values = ", ".join(["(?, ?)"] * len(names))
        params = [v for name in names for v in (name, -1 if name == "bad" else len(name))]
        conn.execute(f"INSERT INTO items (name, size) VALUES {values}", params)
        return [f"stored {name}" for name in names]


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = SqliteDatabase(str(tmp_path / "group.db"), migrations=[SCHEMA])
    await database.open()
    yield database
    await database.close()


async def held(db: SqliteDatabase, writes: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Start ``writes`` while the writer thread is busy, so they all meet in its next commit."""
    release, busy = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        busy.set()
        release.wait(10)

    holding = asyncio.ensure_future(db.write(hold))
    await asyncio.to_thread(busy.wait, 10)
    started = [asyncio.ensure_future(write) for write in writes]
    await asyncio.sleep(0)  # each write is on the writer's queue
    release.set()
    await holding
    return await asyncio.gather(*started, return_exceptions=True)


async def held_writes(db: SqliteDatabase, inserts: Inserts, names: list[str]) -> list[Any]:
    return await held(db, [db.write_together(inserts, name) for name in names])


async def test_writes_of_one_kind_that_meet_in_a_commit_run_as_one_call(
    db: SqliteDatabase,
) -> None:
    inserts = Inserts()
    results = await held_writes(db, inserts, ["a", "bb", "ccc"])
    assert results == ["stored a", "stored bb", "stored ccc"]
    assert inserts.calls == [["a", "bb", "ccc"]]
    rows = await db.read(
        lambda c: c.execute("SELECT name, size FROM items ORDER BY name").fetchall()
    )
    assert rows == [("a", 1), ("bb", 2), ("ccc", 3)]


async def test_a_failing_group_is_rolled_back_and_each_write_runs_alone(
    db: SqliteDatabase,
) -> None:
    inserts = Inserts()
    results = await held_writes(db, inserts, ["a", "bad", "ccc"])
    assert results[0] == "stored a"
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] == "stored ccc"
    assert inserts.calls == [["a", "bad", "ccc"], ["a"], ["bad"], ["ccc"]]
    rows = await db.read(lambda c: c.execute("SELECT name FROM items ORDER BY name").fetchall())
    assert rows == [("a",), ("ccc",)]


async def test_a_write_alone_in_its_commit_is_one_call_with_one_argument(
    db: SqliteDatabase,
) -> None:
    inserts = Inserts()
    assert await db.write_together(inserts, "solo") == "stored solo"
    assert inserts.calls == [["solo"]]


async def test_admissions_in_one_commit_across_statement_chunks_store_and_queue_each_event_once(
    tmp_path: Path,
) -> None:
    """Over 300 admissions in one commit (events go 100 to a statement), colliding across the
    chunks: a duplicate event id, one execution under two event ids, and a duplicate of an
    event an earlier commit stored. Each event is stored and queued once; each duplicate is
    counted on the event it names and its other ids become aliases."""
    db = SqliteDatabase(str(tmp_path / "admit.db"), migrations=sqlite_store.migrations())
    await db.open()
    store, queue = sqlite_store.SqliteStore(db), SqliteQueue(db)
    outbox = SqliteOutbox(store, queue)
    try:
        await outbox.admit(make_event("old"), raw_delivery())
        events = [make_event(f"f{n}") for n in range(350)]
        events[5] = make_event("a1", execution_id="X")
        events[250] = make_event("a2", execution_id="X")
        events.insert(120, make_event("f99", delivery_id="d-2"))
        events.insert(330, make_event("old", delivery_id="d-3"))
        results = await held(db, [outbox.admit(e, raw_delivery()) for e in events])

        by_id = {e.event_id: r for e, r in zip(events, results, strict=True) if r.inserted}
        [winner] = {"a1", "a2"} & set(by_id)
        loser = ({"a1", "a2"} - {winner}).pop()
        unique = {e.event_id for e in events} - {"old", loser}
        assert set(by_id) == unique
        assert sum(r.inserted for r in results) == len(unique)
        answered = {
            e.event_id if e.delivery_id is None else e.delivery_id: r.existing_id
            for e, r in zip(events, results, strict=True)
            if not r.inserted
        }
        assert answered == {"d-2": "f99", "d-3": "old", loser: winner}

        def table(conn: sqlite3.Connection) -> dict[str, Any]:
            return {
                "events": conn.execute("SELECT count(*) FROM events").fetchone()[0],
                "jobs": conn.execute("SELECT count(*) FROM jobs").fetchone()[0],
                "duplicates": dict(
                    conn.execute("SELECT event_id, duplicates FROM events WHERE duplicates > 0")
                ),
                "aliases": dict(conn.execute("SELECT alias, event_id FROM aliases")),
            }

        found = await db.read(table)
        assert found["events"] == found["jobs"] == len(unique) + 1
        assert found["duplicates"] == {"f99": 1, "old": 1, winner: 1}
        assert found["aliases"] == {"d-2": "f99", "d-3": "old", loser: winner}
    finally:
        await db.close()


@pytest.mark.parametrize("first_claim", [True, False])
async def test_an_admission_committed_just_after_a_claim_found_nothing_wakes_that_claim(
    tmp_path: Path, first_claim: bool
) -> None:
    """The claim's look at the queue and an admission meet in one commit, the look first: the
    admission's wake-up reaches the loop before the claim learns it found nothing. The claim
    must still wake for it, not wait for its next poll (an hour here) — also when it is the
    queue's first claim."""
    db = SqliteDatabase(str(tmp_path / "wake.db"), migrations=sqlite_store.migrations())
    await db.open()
    store, queue = sqlite_store.SqliteStore(db), SqliteQueue(db, idle_poll=3600)
    outbox = SqliteOutbox(store, queue)
    try:
        if not first_claim:  # an earlier claim that waited and found nothing
            assert await queue.claim("w", limit=1, lease=30, wait=0.001) == []
        claim = queue.claim("w", limit=1, lease=30, wait=3600)
        async with asyncio.timeout(10):
            jobs, admission = await held(
                db, [claim, outbox.admit(make_event("e1"), raw_delivery())]
            )
        assert admission.inserted
        assert [job.event_id for job in jobs] == ["e1"]
    finally:
        await db.close()
