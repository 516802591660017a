"""Statements of concurrent callers, sent to PostgreSQL together.

A worker runs many jobs at once, and each step of a job is one statement (the lease, the pinned
decision, an effect's intent and result, the run record). Sent alone, every statement costs a
pooled connection, a round trip and a commit. ``StatementBatch`` gathers the statements callers
issue within one pass of the event loop and sends them on one connection in pipeline mode inside
one transaction: one checkout, one round trip, one commit (one WAL flush) for the lot.

Each statement keeps its meaning. It is still one atomic statement, and its first row (or None)
goes to its own caller only after the transaction committed, so nothing a caller is told about is
undone later. The statements of a batch were issued concurrently, so the order they run in (by
text, then by the row each writes, the same order in every batch) is one their callers could
have seen. A statement that fails must not fail its neighbours: when the batch fails (a
constraint, a deadlock, a parameter that cannot be encoded) on a connection that still works, the
batch is rolled back and each statement is run again alone, each caller getting its own row or
error, exactly as without batching. A connection
failure is ``StoreUnavailable`` for every caller of the batch, as it is for a statement sent
alone (committed or not: unknown, in both cases). A caller cancelled while its batch is in
flight does not stop its statement, which commits with the others (as a statement already
received by the server may): a lease taken so lapses by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import pq

from autorunner.coalesce import Coalescer
from autorunner.postgresdb import PostgresDatabase

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]
Statement = tuple[bytes, Params, str]
"""The query, its parameters, and the key of the row it locks first (its order in a batch)."""


class _Refused(Exception):
    """The batch's transaction failed on a connection that still works."""


class StatementBatch:
    """Runs single statements, batching those issued together; ``limit`` statements at most
    per batch, ``parallel`` batches in flight at once (each on its own pooled connection)."""

    def __init__(self, db: PostgresDatabase, *, limit: int = 32, parallel: int = 3) -> None:
        self._db = db
        self._coalescer: Coalescer[Statement, Row | None] = Coalescer(
            self._send, limit=limit, parallel=parallel
        )
        self.batches = 0
        """How many round trips carried more than one statement (for tests and benchmarks)."""

    async def one(self, query: str | bytes, params: Params, *, key: str = "") -> Row | None:
        """Run ``query`` with ``params``; its first row, or None (no row, or no result).
        ``key`` names the row the statement writes (an event id, an effect key): within a batch,
        statements of one text run in the order of their keys, so two batches writing the same
        rows lock them in the same order and cannot deadlock each other."""
        return await self._coalescer.submit(
            (query.encode() if isinstance(query, str) else query, params, key)
        )

    async def _send(self, statements: list[Statement]) -> list[Row | BaseException | None]:
        if len(statements) > 1:
            try:
                rows = await self._together(statements)
            except _Refused:
                pass  # each alone below, each caller its own row or error
            else:
                self.batches += 1
                return list(rows)
        # Concurrently (the pool bounds them): one statement waiting on a lock must not hold
        # back the others of its batch.
        return list(await asyncio.gather(*(self._alone(each) for each in statements)))

    async def _together(self, statements: list[Statement]) -> list[Row | None]:
        # The statements of a batch were issued concurrently, so any order of them is one a
        # caller could have seen: those with the same text go together (``executemany``
        # converts and prepares the query once, then only adds parameters).
        alike: dict[bytes, list[int]] = {}
        for index, (query, _, _) in enumerate(statements):
            alike.setdefault(query, []).append(index)
        for indices in alike.values():
            indices.sort(key=lambda i: statements[i][2])
        rows: list[Row | None] = [None] * len(statements)
        async with self._db.tx() as conn:
            try:
                async with conn.transaction(), conn.pipeline():
                    for query, indices in sorted(alike.items()):  # the same order in every batch
                        cursor = conn.cursor()
                        await cursor.executemany(
                            query, [statements[i][1] for i in indices], returning=True
                        )
                        at = iter(indices)
                        async for result in cursor.results():
                            rows[next(at)] = await _first_row(result)
            except Exception as exc:  # psycopg's refusal, or a parameter it could not encode
                if conn.broken:
                    raise  # the connection is gone: StoreUnavailable for every caller
                raise _Refused from exc
        return rows

    async def _alone(self, statement: Statement) -> Row | BaseException | None:
        query, params, _ = statement
        try:
            async with self._db.tx() as conn:
                return await _first_row(await conn.execute(query, params))
        except Exception as exc:
            return exc


async def _first_row(cursor: psycopg.AsyncCursor[Row]) -> Row | None:
    # The result's status, not ``description`` (which builds a column object per column).
    result = cursor.pgresult
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        return None
    return await cursor.fetchone()
