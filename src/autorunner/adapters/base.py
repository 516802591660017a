"""The ``Adapter`` seam: perform one allowed action, idempotently keyed by its effect key.

Raise ``TransientError`` for failures worth retrying and ``PermanentError`` for the rest.
``delivery`` says what the ledger does with an effect a crash left half-done: ``at_most_once``
marks it unknown and never resends it; ``at_least_once`` performs it again.

The boundary: an effect is half-done only once its request may have reached the remote. An
adapter that may wait before sending (for a rate-limit slot) says so with ``waits_to_send`` and
awaits ``sending()`` at the moment its request leaves; until then a cancel or a crash leaves
the effect ``planned``, and it is performed normally on the next attempt. For every other
adapter the boundary is the call of ``execute``. Every adapter awaits ``sending()`` right before
its request, so the boundary reads in its code. ``notional`` values
an action by the kind's contract (``autorunner.notional``), so the policy can cap it before any
effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import httpx2

from autorunner.decision import Action
from autorunner.errors import PermanentError, TransientError
from autorunner.events import Event
from autorunner.notional import Notional, Valuer

DeliveryMode = Literal["at_most_once", "at_least_once"]


Sending = Callable[[], Awaitable[None]]
"""Awaited by an adapter right before its request leaves the process (see the docstring)."""


async def already_sending() -> None:
    """The ``sending`` of an effect whose boundary is the call of ``execute``."""


class Adapter(Protocol):
    """One kind of effect."""

    kind: str
    delivery: DeliveryMode
    waits_to_send: bool

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        """Perform ``action``; return a JSON-able result for the ledger."""

    def notional(self, params: Mapping[str, Any]) -> Notional:
        """How much money an action with these ``params`` moves (``None``: none)."""


def valuers(adapters: Mapping[str, Adapter]) -> dict[str, Valuer]:
    """The kinds a verdict may allow, each with its valuation (``policy.check``)."""
    return {kind: adapter.notional for kind, adapter in adapters.items()}


async def post(
    http: httpx2.AsyncClient,
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    seconds: float,
    target: str,
) -> httpx2.Response:
    """POST for an adapter: timeouts, network errors, ``429`` and ``5xx`` become ``TransientError``
    (with ``Retry-After`` seconds), other ``4xx`` ``PermanentError``. ``target`` names the
    destination in messages; the URL never appears (it may hold a secret)."""
    try:
        response = await http.post(url, content=body, headers=headers, timeout=seconds)
    except httpx2.TimeoutException as exc:
        raise TransientError(f"{target} timed out") from exc
    except httpx2.TransportError as exc:
        raise TransientError(f"{target} unreachable ({type(exc).__name__})") from exc
    status = response.status_code
    if status == 429 or status >= 500:
        retry_after = response.headers.get("retry-after", "")
        raise TransientError(
            f"{target} answered {status}",
            retry_after=float(retry_after) if retry_after.isdigit() else None,
        )
    if status >= 400:
        raise PermanentError(f"{target} refused the call ({status}): {response.text[:200]}")
    return response
