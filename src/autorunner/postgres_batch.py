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
error, exactly as without batching; once the batch committed, nothing of it runs again (a row
that cannot be read is its caller's error). A connection failure is ``StoreUnavailable`` for every
caller of the batch, as it is for a statement sent alone (committed or not: unknown, in both
cases). A caller cancelled while its batch is in flight does not stop its statement, which
commits with the others (as a statement already received by the server may): a lease taken so
lapses by itself.

Every statement of a batch is sent before one sync, between a BEGIN and a COMMIT sent in the
same pipeline: the batch waits on the server once. (A pipeline's implicit transaction would
need neither, but it commits what was sent when the client stops halfway, say on a parameter
it cannot encode; a batch refused or cut short is rolled back whole.)

A statement may come with its form for many rows (``many``): one statement that takes every row's
parameters as one JSON document (an array of arrays, rendered by orjson in one call) and reads
them with ``jsonb_array_elements``. A batch sends the statements of that text as that one
statement instead of one per row — each statement sent costs the client a wait on the socket,
and psycopg would dump an array parameter element by element in Python (docs/benchmarks.md,
issue 16). It returns each row's key first, which gives each caller its row. A key that comes
twice in a batch goes once in the many-row statement and the rest after it, one by one, so a
caller never sees a row another caller's statement changed in the same statement (two leases of
one event: the second finds it taken). It is never prepared: PostgreSQL plans it for each batch,
for its tables as they are then. Prepared (psycopg prepares a statement at its sixth run), it
would soon run on a plan kept until the table's next ANALYZE, and the plan made for a fresh
table's first rows reads it whole: a burst into a new database read all of it for every batch,
the more the longer it ran (issue 16: 296 to 367 rows read a job over 30,000 jobs, against 6).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from autorunner.coalesce import Coalescer
from autorunner.postgresdb import PostgresDatabase

Params = Sequence[Any] | Mapping[str, Any]
Row = tuple[Any, ...]
Statement = tuple[bytes, Params, str, bytes | None]
"""The query, its parameters, the key of the row it locks first (its order in a batch), and
its form for many rows, if it has one."""


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

    async def one(
        self, query: str | bytes, params: Params, *, key: str = "", many: str | None = None
    ) -> Row | None:
        """Run ``query`` with ``params``; its first row, or None (no row, or no result).
        ``key`` names the row the statement writes (an event id, an effect key): within a batch,
        statements of one text run in the order of their keys, so two batches writing the same
        rows lock them in the same order and cannot deadlock each other.

        ``many`` is the same statement for many rows at once: it takes one JSON array holding,
        in the keys' order, each row's (positional) ``params`` as an array (a ``Jsonb``
        parameter as its JSON value), and returns its rows with the key first, then the
        columns ``query`` returns. ``key`` must be what it returns first. It locks its rows in
        the order PostgreSQL's plan visits them: mostly the array's, the keys' order (a nested
        loop, or a hash of the rows found by key probed by the array), a scan's when the table
        is hashed (a table of a few pages), so two batches may deadlock over the same rows:
        one is then refused and its statements run again alone, as after any refusal."""
        if many is not None and (isinstance(params, Mapping) or not key):
            raise TypeError(
                "a statement with a form for many rows takes positional parameters and the key"
                " its many-row form returns"
            )
        return await self._coalescer.submit(
            (
                query.encode() if isinstance(query, str) else query,
                params,
                key,
                None if many is None else many.encode(),
            )
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

    async def _together(self, statements: list[Statement]) -> list[Row | BaseException | None]:
        # The statements of a batch were issued concurrently, so any order of them is one a
        # caller could have seen: those with the same text go together.
        alike: dict[tuple[bytes, bytes], list[int]] = {}  # by text and form for many rows
        for index, (query, _, _, many) in enumerate(statements):
            alike.setdefault((query, many or b""), []).append(index)
        for indices in alike.values():
            indices.sort(key=lambda i: statements[i][2])
        rows: list[Row | BaseException | None] = [None] * len(statements)
        sent: list[tuple[psycopg.AsyncCursor[Row], int | dict[str, int]]] = []
        async with self._db.tx() as conn:
            try:
                # BEGIN and COMMIT travel in the pipeline with the statements (psycopg's own
                # transaction() would wait on the server for each).
                async with conn.pipeline():
                    await conn.execute(b"BEGIN")
                    for (query, many), same in sorted(alike.items()):  # the same order always
                        if many and len(same) > 1:
                            same = await _send_as_one(conn, many, statements, same, sent)  # noqa: PLW2901 - the rest
                        sent.extend(
                            [(await conn.execute(query, statements[i][1]), i) for i in same]
                        )
                    await conn.execute(b"COMMIT")
            except Exception as exc:  # psycopg's refusal, or a parameter it could not encode
                if conn.broken:
                    raise  # the connection is gone: StoreUnavailable for every caller
                # A statement refused (the server skipped the rest, COMMIT too), or one that
                # could not be sent after others were: none of the batch stays.
                await conn.rollback()
                raise _Refused from exc
            # The pipeline's end sent the one sync and took every result back: the batch
            # waited on the server once, and all of it is committed. Nothing runs again now.
            for cursor, to in sent:
                await _read(cursor, to, rows)
        return rows

    async def _alone(self, statement: Statement) -> Row | BaseException | None:
        query, params, *_ = statement
        try:
            async with self._db.tx() as conn:
                return await _first_row(await conn.execute(query, params))
        except Exception as exc:
            return exc


async def _send_as_one(
    conn: psycopg.AsyncConnection[Row],
    many: bytes,
    statements: list[Statement],
    indices: list[int],
    sent: list[tuple[psycopg.AsyncCursor[Row], int | dict[str, int]]],
) -> list[int]:
    """Send the statements at ``indices`` (sorted by key) as the one statement ``many``, each
    key's first, and add it to ``sent`` with the index of each key's caller; return the indices
    left to send one by one (the keys' repeats, or all of them when their values hold a NUL
    character)."""
    first: dict[str, int] = {}
    rest = []
    for index in indices:
        if statements[index][2] in first:
            rest.append(index)
        else:
            first[statements[index][2]] = index
    document = orjson.dumps([[_plain(v) for v in statements[i][1]] for i in first.values()])
    if b"\\u0000" in document:
        return indices  # one by one: each value then refused or stored as its single form does
    cursor = await conn.execute(many, (document.decode(),), prepare=False)  # planned afresh
    sent.append((cursor, first))
    return rest


def _plain(value: object) -> object:
    """A parameter as its JSON value: a ``Jsonb`` parameter's object (rendered by orjson, as the
    connection's own JSON dumper does, never by a ``dumps`` of the ``Jsonb``'s own), any other
    as it is."""
    return value.obj if isinstance(value, Jsonb) else value


async def _read(
    cursor: psycopg.AsyncCursor[Row],
    to: int | dict[str, int],
    rows: list[Row | BaseException | None],
) -> None:
    """Give the callers of ``cursor`` (one, or one per key) their rows. Their statement is
    committed: a row that cannot be read (a value psycopg cannot load) is their error, never a
    reason to run the statement again."""
    try:
        if isinstance(to, int):
            rows[to] = await _first_row(cursor)
        elif _returned(cursor):
            for row in await cursor.fetchall():
                rows[to[row[0]]] = row[1:]
    except Exception as exc:
        for index in [to] if isinstance(to, int) else to.values():
            rows[index] = exc


async def _first_row(cursor: psycopg.AsyncCursor[Row]) -> Row | None:
    return await cursor.fetchone() if _returned(cursor) else None


def _returned(cursor: psycopg.AsyncCursor[Row]) -> bool:
    """Whether the statement returned rows (zero or more)."""
    # The result's status, not ``description`` (which builds a column object per column).
    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK
