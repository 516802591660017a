"""What a model's tokens cost: the settings' ``LLM_PRICES`` first, then the maintained table of
``genai-prices``; a model neither knows cannot be priced (``None``), and a USD budget then
refuses it rather than guess."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from genai_prices import Usage, calc_price

from autorunner.errors import ConfigError

MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input and output tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def micro_usd(self, input_tokens: int, output_tokens: int) -> int:
        """The cost in millionths of a dollar, rounded up (USD per million tokens times tokens
        is exactly micro-dollars)."""
        cost = self.input_per_mtok * input_tokens + self.output_per_mtok * output_tokens
        return math.ceil(cost)

    def micro_usd_at_most(self, tokens: int) -> int:
        """The most ``tokens`` tokens can cost, whichever way they split."""
        return math.ceil(max(self.input_per_mtok, self.output_per_mtok) * tokens)

    def tokens_for(self, micro_usd: int) -> int:
        """The most tokens ``micro_usd`` surely pays for."""
        dearer = max(self.input_per_mtok, self.output_per_mtok)
        return MILLION * 1000 if dearer == 0 else math.floor(micro_usd / dearer)


def parse_prices(text: str) -> dict[str, Price]:
    """``LLM_PRICES``: ``model=input/output,…`` in USD per million tokens."""
    found: dict[str, Price] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        model, sep, pair = part.partition("=")
        given, slash, taken = pair.partition("/")
        try:
            price = Price(Decimal(given.strip()), Decimal(taken.strip()))
        except InvalidOperation:
            price = None
        if (
            not sep
            or not slash
            or not model.strip()
            or price is None
            or min(price.input_per_mtok, price.output_per_mtok) < 0
        ):
            raise ConfigError(
                f"LLM_PRICES: {part!r} is not model=input/output (USD per million tokens)"
            )
        found[model.strip()] = price
    return found


class Prices:
    """Prices by model name; see the module docstring."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._overrides = dict(overrides or {})

    def of(self, model: str) -> Price | None:
        return self._overrides.get(model) or _table_price(model)


@functools.lru_cache(maxsize=64)
def _table_price(model: str) -> Price | None:
    try:
        given = calc_price(Usage(input_tokens=MILLION, output_tokens=0), model)
        taken = calc_price(Usage(input_tokens=0, output_tokens=MILLION), model)
    except LookupError:
        return None
    return Price(Decimal(given.total_price), Decimal(taken.total_price))
