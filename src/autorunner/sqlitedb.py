"""One SQLite file shared by the local store and queue: a writer thread doing group commits.

Every write is a small function over a ``sqlite3.Connection``; the writer thread takes all
writes waiting, runs them in one ``BEGIN IMMEDIATE`` transaction and commits once, so many
concurrent requests share one fsync (``synchronous=FULL`` by default: an acknowledged write
survives power loss, not only a process crash). If one write raises, the batch is rolled back
and each write is re-run in a transaction of its own, so a bad write never fails its neighbours.
Reads run on a second thread with its own connection (WAL lets it read while the writer writes).

Errors from SQLite that mean "the database cannot be used right now" (locked past the busy
timeout, I/O, disk full, read-only) become ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from autorunner.errors import ConfigError, StoreUnavailable

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Synchronous = Literal["FULL", "NORMAL"]


Together = Callable[[sqlite3.Connection, list[Any]], list[Any]]
"""Writes of one kind run as one: given each write's argument, returns each one's result."""


@dataclass(slots=True)
class _Pending:
    op: Op
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    together: Together | None = None
    arg: Any = None


class SqliteDatabase:
    """A SQLite file with one writer thread (group commit) and one reader thread."""

    def __init__(
        self,
        path: str,
        *,
        migrations: Sequence[str] = (),
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = 5000,
        max_batch: int = 1000,
        migrate: bool = True,
    ) -> None:
        self.path = path
        self._migrations = tuple(migrations)
        self._migrate_on_open = migrate
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._max_batch = max_batch
        self._writes: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._reads: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    async def open(self) -> None:
        """Create the file if needed, apply migrations and start the threads. The folder must
        exist (a typo in QUEUE_URL is an error, not a new directory). Without ``migrate`` (the
        inspection commands) nothing is changed: a schema older or newer than the code is a
        ``ConfigError``."""
        folder = Path(self.path).parent
        if self.path != ":memory:" and not await asyncio.to_thread(folder.is_dir):
            raise ConfigError(
                f"cannot create the SQLite database {self.path}: the folder {folder} does not"
                " exist (check QUEUE_URL / DATABASE_URL)"
            )
        self._start("writer", self._write_loop)
        try:
            await self.write(self._migrate if self._migrate_on_open else self._require)
        except BaseException:
            await self.close()
            raise
        self._start("reader", self._read_loop)  # after the writer has set WAL mode and the schema

    def _start(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"sqlite-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` inside the next group-committed transaction; return once it is durable."""
        return await self._submit(self._writes, op)

    async def write_together(self, together: Together, arg: Any) -> Any:
        """Like ``write``, but the writes with the same ``together`` that meet in one group
        commit run as one call over all their arguments (one multi-row statement instead of
        one statement each: fewer trips between the writer thread and SQLite, each of which
        hands the GIL over). The writes are concurrent, so running them as one, before or
        after the others of the commit, is an order they could have had."""
        if self._closed:
            raise StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._writes.put(
            _Pending(lambda conn: together(conn, [arg])[0], future, loop, together, arg)
        )
        return await future

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on the reader connection inside one read transaction."""
        return await self._submit(self._reads, op)

    async def close(self) -> None:
        """Finish queued work and stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._writes.put(None)
        self._reads.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 10)

    async def _submit(
        self, q: queue.SimpleQueue[_Pending | None], op: Callable[[sqlite3.Connection], T]
    ) -> T:
        if self._closed:
            raise StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        q.put(_Pending(op, future, loop))
        return await future

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if writer:  # WAL mode is persistent in the file; only the writer sets it
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _require(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        wanted = len(self._migrations)
        if version != wanted:
            side = "older" if version < wanted else "newer"
            raise ConfigError(
                f"{self.path} has schema version {version}, {side} than this autorunner"
                f" ({wanted}): run `autorunner serve` of this version on it first"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(self._migrations):
            raise ConfigError(
                f"{self.path} has schema version {version}, newer than this autorunner"
                f" ({len(self._migrations)}): run the newer autorunner"
            )
        for number, script in enumerate(self._migrations[version:], start=version + 1):
            for statement in script.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")

    def _write_loop(self) -> None:
        conn = self._open_or_fail(self._writes, writer=True)
        stop = False
        while not stop and conn is not None:
            first = self._writes.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            _deliver(batch, self._commit(conn, batch))
        if conn is not None:
            conn.close()

    def _read_loop(self) -> None:
        conn = self._open_or_fail(self._reads, writer=False)
        while conn is not None:
            item = self._reads.get()
            if item is None:
                break
            _deliver([item], [self._run_alone(conn, item.op, begin="BEGIN")])
        if conn is not None:
            conn.close()

    def _open_or_fail(
        self, q: queue.SimpleQueue[_Pending | None], *, writer: bool
    ) -> sqlite3.Connection | None:
        try:
            return self._connect(writer=writer)
        except sqlite3.Error as exc:
            error = StoreUnavailable(f"cannot open SQLite database {self.path}: {exc}")
            while (item := q.get()) is not None:
                _deliver([item], [(False, error)])
            return None

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        if len(batch) == 1:
            return [self._run_alone(conn, batch[0].op)]
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(False, _unavailable(exc))] * len(batch)
        try:
            results = _run_batch(conn, batch)
            conn.execute("COMMIT")
        except Exception:
            _rollback(conn)
            return [self._run_alone(conn, item.op) for item in batch]
        return results

    @staticmethod
    def _run_alone(
        conn: sqlite3.Connection, op: Op, begin: str = "BEGIN IMMEDIATE"
    ) -> tuple[bool, Any]:
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            return (False, _unavailable(exc))
        try:
            value = op(conn)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            return (False, _unavailable(exc))
        except Exception as exc:
            _rollback(conn)
            return (False, exc)
        return (True, value)


def _run_batch(conn: sqlite3.Connection, batch: list[_Pending]) -> list[tuple[bool, Any]]:
    """Each write's result, in order; the writes of one ``together`` run as one call where
    the first of them stands."""
    results: list[tuple[bool, Any] | None] = [None] * len(batch)
    groups: dict[Together, list[int]] = {}
    for index, item in enumerate(batch):
        if item.together is not None:
            groups.setdefault(item.together, []).append(index)
    for index, item in enumerate(batch):
        if results[index] is not None:
            continue
        if item.together is None or len(members := groups[item.together]) == 1:
            results[index] = (True, item.op(conn))
            continue
        values = item.together(conn, [batch[member].arg for member in members])
        for member, value in zip(members, values, strict=True):
            results[member] = (True, value)
    return cast(list[tuple[bool, Any]], results)


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    error = StoreUnavailable(f"SQLite store unavailable: {exc}")
    error.__cause__ = exc
    return error


def _deliver(batch: list[_Pending], results: list[tuple[bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, tuple[bool, Any]]]] = {}
    for item, result in zip(batch, results, strict=True):
        by_loop.setdefault(item.loop, []).append((item, result))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[_Pending, tuple[bool, Any]]]) -> None:
    for item, (ok, value) in pairs:
        if item.future.done():
            continue
        if ok:
            item.future.set_result(value)
        else:
            item.future.set_exception(value)
