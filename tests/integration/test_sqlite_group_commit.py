"""The SQLite writer's group commit: writes of one kind that meet in a commit run as one call,
and a failing group falls back to each write alone, so a bad write never fails its neighbours."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from autorunner.sqlitedb import SqliteDatabase

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


async def held_writes(db: SqliteDatabase, inserts: Inserts, names: list[str]) -> list[Any]:
    """Submit ``names`` while the writer thread is busy, so they all meet in its next commit."""
    release, busy = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        busy.set()
        release.wait(10)

    holding = asyncio.ensure_future(db.write(hold))
    await asyncio.to_thread(busy.wait, 10)
    writes = [asyncio.ensure_future(db.write_together(inserts, name)) for name in names]
    await asyncio.sleep(0)  # each write is on the writer's queue
    release.set()
    await holding
    return await asyncio.gather(*writes, return_exceptions=True)


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
