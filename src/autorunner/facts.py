"""The facts a decision is made on, the same whichever channel delivered the event (pure).

A webhook body, each stream frame version and a polled execution carry different texts for one
execution (auto-contract §7: the webhook lacks the trigger context the frame has; a poll has no
text at all). So the trigger's title, description and symbol are taken from Auto's own record of
the query when the runner can read it (``GET /queries/{id}``, one poll per query per
``CONTEXT_CACHE_SECONDS``): its ``title``, its ``description``, and the one symbol its conditions
watch. A field Auto's record lacks, or every field when the runner has no Elfa credentials (then
webhooks are the only channel), comes from the delivery. The delivery itself is kept as it came.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from autorunner.events import Event

SYMBOL_ARGS = ("symbol", "ticker", "token", "asset", "coin")
"""Condition arguments that name what a leaf watches (``ticker`` as ``BTC:BINANCE``)."""


def resolve(event: Event, query: Mapping[str, Any] | None) -> Event:
    """``event`` with its title, body and symbol from Auto's record of its query (see above)."""
    if not query:
        return event
    return dataclasses.replace(
        event,
        title=_text(query.get("title")) or event.title,
        body=_text(query.get("description")) or event.body,
        symbol=query_symbol(query) or event.symbol,
    )


def from_envelope(event: Event, envelope: Mapping[str, Any] | None) -> Event:
    """``event`` with the facts a recorded run decided on (its envelope's ``trigger``), so a
    replay decides on the same facts without asking Auto again."""
    trigger = (envelope or {}).get("trigger") or {}
    if not trigger:
        return event
    return dataclasses.replace(
        event,
        title=trigger.get("title"),
        body=trigger.get("body"),
        symbol=trigger.get("symbol"),
    )


def query_symbol(query: Mapping[str, Any]) -> str | None:
    """The one symbol a query's conditions watch (upper case); ``None`` for none or several."""
    definition = query.get("query")
    holder = definition if isinstance(definition, Mapping) else query
    found = {s for s in _symbols(holder.get("conditions")) if s}
    return found.pop() if len(found) == 1 else None


def _symbols(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _symbols(item)
    elif isinstance(node, Mapping):
        args = node.get("args")
        if isinstance(args, Mapping):
            for name in SYMBOL_ARGS:
                if isinstance(args.get(name), str):
                    yield args[name].split(":", 1)[0].strip().upper()
        for key in ("AND", "OR", "and", "or", "conditions"):
            yield from _symbols(node.get(key))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
