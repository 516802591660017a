"""SIGKILL ``autorunner serve`` while events are in flight, restart it: nothing acknowledged is lost,
no effect happens twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import httpx2

from autorunner.sim.sender import sample_event, send_event
from tests.acceptance.runner import SECRET, Server, base_env, start_server
from tests.helpers import eventually

TOTAL = 400
KILL_AFTER = 150


async def fire(server: Server, total: int, kill_after: int, db: Path) -> set[str]:
    """Send events 16 at a time; SIGKILL the server once ``kill_after`` were acknowledged, at
    an acknowledgement after which the store still holds unfinished events (under load the two
    workers can keep up for a while; a kill then would test nothing)."""
    acked: set[str] = set()
    pending = iter(range(total))
    killed = asyncio.Event()

    async def sender(client: httpx2.AsyncClient) -> None:
        for n in pending:
            event_id = f"crash-{n:04d}"
            try:
                reply = await send_event(
                    client, server.url, SECRET, sample_event(event_id=event_id), event_id=event_id
                )
            except httpx2.TransportError:
                continue
            if reply.status == 202:
                acked.add(event_id)
            if len(acked) >= kill_after and not killed.is_set() and unfinished(db):
                killed.set()
                server.kill()

    async with httpx2.AsyncClient(timeout=5) as client:
        await asyncio.gather(*(sender(client) for _ in range(16)))
    assert killed.is_set()
    return acked


def unfinished(db: Path) -> bool:
    return any(status != "done" for status in statuses(db).values())


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT event_id, status FROM events").fetchall())


def effects(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT effect_key, status FROM effects").fetchall())


async def test_sigkill_mid_flight_then_restart_processes_every_acked_event_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runner.db"
    # Two workers fall behind sixteen senders, so the kill always finds a backlog and jobs running.
    env = base_env(db, WORKER_CONCURRENCY="2")
    first = start_server(env, tmp_path, tmp_path / "first.log")
    acked = await fire(first, TOTAL, KILL_AFTER, db)
    assert len(acked) >= KILL_AFTER
    in_flight = {k for k, v in statuses(db).items() if v != "done"}
    assert in_flight, "the kill should leave unfinished events behind"

    second = start_server(env, tmp_path, tmp_path / "second.log")
    try:

        async def all_done() -> bool:
            current = statuses(db)
            return all(current.get(event_id) == "done" for event_id in acked)

        await eventually(all_done, within=60)
    finally:
        assert second.terminate() == 0

    # Every acknowledged event is stored and finished.
    final = statuses(db)
    assert all(final[event_id] == "done" for event_id in acked)
    # No effect key ran twice across both processes' lifetimes.
    notified = Counter(
        line["effect_key"]
        for server in (first, second)
        for line in server.log_lines()
        if line.get("event") == "effect.notify"
    )
    assert max(notified.values()) == 1
    ledger = effects(db)
    for event_id in acked:
        key = f"{event_id}:notify"
        assert ledger[key] in {"done", "unknown"}
        if ledger[key] == "done":
            assert notified[key] == 1
