"""A PostgreSQL database for the cloud-mode store: a psycopg 3 connection pool, versioned
migrations, and one way in (``tx``) that turns connection failures into ``StoreUnavailable``.

Connections are in autocommit mode, so a single statement is one round trip and its own
transaction. The schema is applied at start by versioned scripts under an advisory lock, so
many processes may start at once. Any connection failure — the server down, restarting, or the
pool exhausted past its timeout — is ``StoreUnavailable``; the pool replaces broken connections
in the background, so the database is usable again by itself when the server returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import orjson
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from autorunner.errors import ConfigError, StoreUnavailable

Conn = psycopg.AsyncConnection[TupleRow]
DOWN_WAIT = 0.2
"""Seconds to wait for a pooled connection while the server is known to be away."""
MIGRATION_LOCK = 0x6175746F72756E  # "autorun": one key for every autorunner process


async def _configure(conn: Conn) -> None:
    # orjson for every json/jsonb value on this connection (it also encodes dataclasses).
    set_json_dumps(json_dumps, conn)
    set_json_loads(orjson.loads, conn)


def json_dumps(value: object) -> bytes:
    """JSON that ``jsonb`` takes: it refuses the character U+0000 in any string, which a signed
    body may carry (``"\\u0000"``), so NUL is stored as U+FFFD instead of failing the write."""
    text = orjson.dumps(value)
    if b"\\u0000" in text:  # rare; a literal backslash before "u0000" also lands here, harmlessly
        text = orjson.dumps(_without_nul(orjson.loads(text)))
    return text


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


class PostgresDatabase:
    """A connection pool with migrations; build it with ``await PostgresDatabase.open(url)``."""

    def __init__(self, pool: AsyncConnectionPool[Conn]) -> None:
        self._pool = pool
        self._down = False

    @classmethod
    async def open(
        cls, url: str, *, connect_timeout: float = 5.0, max_size: int = 10
    ) -> PostgresDatabase:
        """Connect; ``StoreUnavailable`` (one line naming the server) if the server cannot be
        reached within ``connect_timeout`` seconds."""
        seconds = max(1, round(connect_timeout))
        try:  # one plain attempt first, for one clear line when the server is not there
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=seconds)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot reach PostgreSQL at {_where(url)}: {_first_line(exc)}"
            ) from exc
        await probe.close()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=connect_timeout,
            open=False,
            configure=_configure,
            kwargs={"connect_timeout": seconds, "autocommit": True},
            reconnect_timeout=24 * 3600,  # keep trying in the background while the server is away
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            await pool.close()
            raise StoreUnavailable(
                f"cannot reach PostgreSQL at {_where(url)}: {_first_line(exc)}"
            ) from exc
        return cls(pool)

    async def migrate(self, scripts: Sequence[str]) -> int:
        """Apply the scripts not yet applied, in order, under an advisory lock; the version.
        A database already past ``len(scripts)`` is a ``ConfigError``: it needs newer code."""
        async with self.tx(atomic=True) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > len(scripts):
                raise ConfigError(
                    f"the database's schema is at version {version}, newer than this autorunner"
                    f" knows ({len(scripts)}): run the newer autorunner, or a fresh database"
                )
            for number, script in enumerate(scripts[version:], start=version + 1):
                await conn.execute(script.encode())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
            return len(scripts)

    async def require(self, version: int) -> None:
        """Check, changing nothing, that the schema is at ``version``; ``ConfigError`` if not."""
        async with self.tx() as conn:
            cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            row = await cur.fetchone()
            found = 0
            if row and row[0]:
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                row = await cur.fetchone()
                found = int(row[0]) if row else 0
        if found == version:
            return
        if found == 0:
            raise ConfigError(
                "no autorunner schema in this database yet: start `autorunner ingress` or"
                " `autorunner worker` once (they create it), or check DATABASE_URL"
            )
        newer = "newer than this autorunner" if found > version else "older than this autorunner"
        raise ConfigError(
            f"the database's schema is at version {found}, {newer} (version {version}): run"
            " the `autorunner ingress` or `worker` of the same version first"
        )

    @asynccontextmanager
    async def tx(self, *, atomic: bool = False) -> AsyncIterator[Conn]:
        """A pooled connection; ``atomic`` wraps its statements in one transaction (committed
        on exit, rolled back on error).

        After a connection failure the database counts as down until a use succeeds, and waits
        at most ``DOWN_WAIT`` for a connection meanwhile: while the server is away, a webhook
        gets its ``503`` at once instead of after the pool's full timeout.
        """
        used: Conn | None = None
        try:
            async with self._pool.connection(timeout=DOWN_WAIT if self._down else None) as conn:
                used = conn
                if atomic:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            # A deadlock or a cancelled statement is an OperationalError too, but on a working
            # connection: worth a retry (StoreUnavailable), not a reason to treat the server
            # as away.
            self._down = used is None or used.broken
            raise StoreUnavailable(f"PostgreSQL store unavailable: {_first_line(exc)}") from exc
        self._down = False

    async def close(self) -> None:
        await self._pool.close()


def _where(url: str) -> str:
    """The server part of a connection URL, never its password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unparsable URL)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
