"""The model's spend on the SQLite store (``store.base.Spend``), mixed into ``SqliteStore``."""

from __future__ import annotations

import sqlite3

from autorunner.records import SpendClaim, SpendView
from autorunner.sqlitedb import SqliteDatabase
from autorunner.store.rules import over_limit

MIGRATION = """CREATE TABLE llm_spend (day TEXT NOT NULL, scope TEXT NOT NULL,
    spent_micro_usd INTEGER NOT NULL DEFAULT 0, spent_tokens INTEGER NOT NULL DEFAULT 0,
    reserved_micro_usd INTEGER NOT NULL DEFAULT 0, reserved_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope)) WITHOUT ROWID"""
COLUMNS = "scope, spent_micro_usd, spent_tokens, reserved_micro_usd, reserved_tokens"


def _view(row: tuple[str, int, int, int, int]) -> SpendView:
    return SpendView(
        scope=row[0],
        spent_micro_usd=row[1],
        spent_tokens=row[2],
        reserved_micro_usd=row[3],
        reserved_tokens=row[4],
    )


class SqliteSpend:
    """The spend half of ``SqliteStore``: one writer, so a reservation's check and its update
    are one transaction no other can interleave."""

    db: SqliteDatabase

    async def reserve_spend(self, day: str, claims: list[SpendClaim]) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            for claim in claims:
                row = conn.execute(
                    f"SELECT {COLUMNS} FROM llm_spend WHERE day = ? AND scope = ?",
                    (day, claim.scope),
                ).fetchone()
                if over_limit(claim, _view(row) if row else SpendView(scope=claim.scope)):
                    return claim.scope
            conn.executemany(
                "INSERT INTO llm_spend (day, scope, reserved_micro_usd, reserved_tokens)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (day, scope) DO UPDATE SET"
                " reserved_micro_usd = reserved_micro_usd + excluded.reserved_micro_usd,"
                " reserved_tokens = reserved_tokens + excluded.reserved_tokens",
                [(day, c.scope, c.micro_usd, c.tokens) for c in claims],
            )
            return None

        return await self.db.write(op)

    async def settle_spend(
        self, day: str, claims: list[SpendClaim], *, micro_usd: int, tokens: int
    ) -> None:
        await self.db.write(
            lambda conn: conn.executemany(
                "UPDATE llm_spend SET reserved_micro_usd = reserved_micro_usd - ?,"
                " reserved_tokens = reserved_tokens - ?, spent_micro_usd = spent_micro_usd + ?,"
                " spent_tokens = spent_tokens + ? WHERE day = ? AND scope = ?",
                [(c.micro_usd, c.tokens, micro_usd, tokens, day, c.scope) for c in claims],
            )
        )

    async def spend_of(self, day: str) -> list[SpendView]:
        rows = await self.db.read(
            lambda conn: conn.execute(
                f"SELECT {COLUMNS} FROM llm_spend WHERE day = ? ORDER BY scope", (day,)
            ).fetchall()
        )
        return [_view(r) for r in rows]
