"""The model's spend in the in-memory twin (``store.base.Spend``), mixed into ``MemoryStore``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from autorunner.records import SpendClaim, SpendView
from autorunner.store.rules import over_limit


class MemorySpend:
    """The spend half of ``MemoryStore``."""

    _spend: dict[tuple[str, str], SpendView]
    _check: Callable[[], None]

    async def reserve_spend(self, day: str, claims: list[SpendClaim]) -> str | None:
        self._check()
        for claim in claims:
            if over_limit(claim, self._spend.get((day, claim.scope), SpendView(scope=claim.scope))):
                return claim.scope
        for claim in claims:
            found = self._spend.get((day, claim.scope), SpendView(scope=claim.scope))
            self._spend[day, claim.scope] = replace(
                found,
                reserved_micro_usd=found.reserved_micro_usd + claim.micro_usd,
                reserved_tokens=found.reserved_tokens + claim.tokens,
            )
        return None

    async def settle_spend(
        self, day: str, claims: list[SpendClaim], *, micro_usd: int, tokens: int
    ) -> None:
        self._check()
        for claim in claims:
            found = self._spend.get((day, claim.scope), SpendView(scope=claim.scope))
            self._spend[day, claim.scope] = replace(
                found,
                reserved_micro_usd=found.reserved_micro_usd - claim.micro_usd,
                reserved_tokens=found.reserved_tokens - claim.tokens,
                spent_micro_usd=found.spent_micro_usd + micro_usd,
                spent_tokens=found.spent_tokens + tokens,
            )

    async def spend_of(self, day: str) -> list[SpendView]:
        self._check()
        return sorted((v for (d, _), v in self._spend.items() if d == day), key=lambda v: v.scope)
