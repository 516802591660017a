"""The model's spend on the PostgreSQL store (``store.base.Spend``), mixed into
``PostgresStore``: a reservation locks its scopes' rows (in scope order, so two reservations
cannot deadlock), checks and adds in one transaction — workers racing for the last dollar of a
day take it one at a time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from autorunner.postgresdb import Conn
from autorunner.records import SpendClaim, SpendView
from autorunner.store.rules import over_limit

MIGRATION = """CREATE TABLE llm_spend (day text NOT NULL, scope text NOT NULL,
    spent_micro_usd bigint NOT NULL DEFAULT 0, spent_tokens bigint NOT NULL DEFAULT 0,
    reserved_micro_usd bigint NOT NULL DEFAULT 0, reserved_tokens bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, scope));
"""
COLUMNS = "scope, spent_micro_usd, spent_tokens, reserved_micro_usd, reserved_tokens"


def _view(row: Any) -> SpendView:
    return SpendView(
        scope=row[0],
        spent_micro_usd=int(row[1]),
        spent_tokens=int(row[2]),
        reserved_micro_usd=int(row[3]),
        reserved_tokens=int(row[4]),
    )


class PostgresSpend:
    """The spend half of ``PostgresStore``."""

    _tx: Callable[..., AbstractAsyncContextManager[Conn]]

    async def reserve_spend(self, day: str, claims: list[SpendClaim]) -> str | None:
        ordered = sorted(claims, key=lambda c: c.scope)
        async with self._tx(atomic=True) as conn:
            for claim in ordered:
                await conn.execute(
                    "INSERT INTO llm_spend (day, scope) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (day, claim.scope),
                )
                cur = await conn.execute(
                    f"SELECT {COLUMNS} FROM llm_spend WHERE day = %s AND scope = %s FOR UPDATE",
                    (day, claim.scope),
                )
                if over_limit(claim, _view(await cur.fetchone())):
                    return claim.scope  # nothing added: the transaction only locked rows
            for claim in ordered:
                await conn.execute(
                    "UPDATE llm_spend SET reserved_micro_usd = reserved_micro_usd + %s,"
                    " reserved_tokens = reserved_tokens + %s WHERE day = %s AND scope = %s",
                    (claim.micro_usd, claim.tokens, day, claim.scope),
                )
        return None

    async def settle_spend(
        self, day: str, claims: list[SpendClaim], *, micro_usd: int, tokens: int
    ) -> None:
        async with self._tx(atomic=True) as conn:
            for claim in sorted(claims, key=lambda c: c.scope):
                await conn.execute(
                    "UPDATE llm_spend SET reserved_micro_usd = reserved_micro_usd - %s,"
                    " reserved_tokens = reserved_tokens - %s,"
                    " spent_micro_usd = spent_micro_usd + %s, spent_tokens = spent_tokens + %s"
                    " WHERE day = %s AND scope = %s",
                    (claim.micro_usd, claim.tokens, micro_usd, tokens, day, claim.scope),
                )

    async def spend_of(self, day: str) -> list[SpendView]:
        async with self._tx() as conn:
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM llm_spend WHERE day = %s ORDER BY scope", (day,)
            )
            return [_view(r) for r in await cur.fetchall()]
