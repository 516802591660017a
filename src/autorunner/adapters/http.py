"""The ``http`` adapter: POST to a named internal endpoint, idempotently and signed.

Decisions name an endpoint (``params.endpoint``), never a URL: the operator maps names to URLs
(``HTTP_ENDPOINTS="orders=http://…"``), so no decision can send data anywhere else. Every call
carries ``Idempotency-Key: <effect key>`` and, with ``HTTP_ADAPTER_SECRET``, an HMAC of our own::

    X-Autorunner-Timestamp: <unix seconds>
    X-Autorunner-Signature: v1=hex(HMAC_SHA256(secret, timestamp + "." + effect_key + "." + body))

The amount an endpoint moves is read from one place in the body, ``notional_usd`` unless the
operator names another path for it (``HTTP_NOTIONAL="orders=order.usd,tickets=-"``; ``-``: the
endpoint moves no money), so a route's ``max_notional_usd`` can cap it (``autorunner.notional``).

Timeouts, network errors, ``429`` and ``5xx`` are retryable; other ``4xx`` are permanent. The
receiver de-duplicates on the key, so a call cut off by a crash is safely sent again
(``at_least_once``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from autorunner.adapters.base import DeliveryMode, Sending, post
from autorunner.decision import Action
from autorunner.errors import PermanentError
from autorunner.events import Event
from autorunner.notional import DEFAULT_HTTP_PATH, Notional, http_valuer


def sign_body(secret: str, *, timestamp: str, effect_key: str, body: bytes) -> str:
    """The ``X-Autorunner-Signature`` value."""
    message = timestamp.encode() + b"." + effect_key.encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class HttpAdapter:
    """POSTs ``params.body`` (JSON) to ``endpoints[params.endpoint]``."""

    kind = "http"
    waits_to_send = False
    delivery: DeliveryMode = "at_least_once"

    def __init__(
        self,
        *,
        http: httpx2.AsyncClient,
        endpoints: Mapping[str, str],
        secret: str | None = None,
        timeout: float = 10.0,
        notional_paths: Mapping[str, str | None] | None = None,
    ) -> None:
        self._http = http
        self._endpoints = dict(endpoints)
        paths = notional_paths or {}
        self._valuer = http_valuer({n: paths.get(n, DEFAULT_HTTP_PATH) for n in self._endpoints})
        self._secret = secret
        self._timeout = timeout

    def notional(self, params: Mapping[str, Any]) -> Notional:
        return self._valuer(params)

    async def execute(
        self, action: Action, *, effect_key: str, event: Event, sending: Sending
    ) -> dict[str, Any]:
        name = action.params.get("endpoint")
        url = self._endpoints.get(str(name))
        if url is None:
            raise PermanentError(f"http endpoint {name!r} is not configured (HTTP_ENDPOINTS)")
        body = orjson.dumps(action.params.get("body", {}))
        headers = {"content-type": "application/json", "idempotency-key": effect_key}
        if self._secret:
            ts = str(int(time.time()))
            headers["x-autorunner-timestamp"] = ts
            headers["x-autorunner-signature"] = sign_body(
                self._secret, timestamp=ts, effect_key=effect_key, body=body
            )
        await sending()
        response = await post(
            self._http,
            url,
            body=body,
            headers=headers,
            seconds=self._timeout,
            target=f"http endpoint {name!r}",
        )
        return {
            "status": response.status_code,
            "endpoint": name,
            "response": _json_or_text(response),
        }


def _json_or_text(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
