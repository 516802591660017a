"""``AutoClient``: the Elfa Auto API over one shared httpx2 client.

Both auth modes (API key; x402 agent secret, which polls with POST), request signing of every
mutation when an HMAC secret is configured, a client-side spacing of requests to the plan's rate,
``429`` honoured by holding *every* request until ``x-ratelimit-reset`` / ``Retry-After``, and
retries with backoff and jitter for idempotent calls. Errors become the ``AutoError`` family;
no credential ever reaches an exception message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx2
import orjson
import structlog

from autorunner import auto_models as m
from autorunner.clock import Clock, system_clock
from autorunner.errors import (
    AutoAuthError,
    AutoError,
    AutoNotFound,
    AutoPaymentRequired,
    AutoRejected,
    AutoUnavailable,
)
from autorunner.retry import RetryPolicy
from autorunner.signatures import sign_auto_request

log = structlog.get_logger("autorunner.auto_client")

Mode = Literal["api_key", "x402"]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class AutoCredentials:
    """What the client authenticates with; ``repr`` never shows a value."""

    mode: Mode = "api_key"
    api_key: str | None = None
    agent_secret: str | None = None
    hmac_secret: str | None = None
    payment_header: str | None = None

    def __repr__(self) -> str:
        present = [
            n
            for n in ("api_key", "agent_secret", "hmac_secret", "payment_header")
            if getattr(self, n)
        ]
        return f"AutoCredentials(mode={self.mode!r}, set={present})"


def retry_at(headers: Mapping[str, str], now: float) -> float | None:
    """When a ``429``/``503`` allows the next request: ``x-ratelimit-reset`` (epoch seconds),
    else ``Retry-After`` (seconds or an HTTP date); ``None`` when neither is usable."""
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            value = 0.0
        if value > 1e11:  # milliseconds
            value /= 1000
        if value > now:
            return value
    after = headers.get("retry-after")
    if after:
        try:
            return now + max(0.0, float(after))
        except ValueError:
            pass
        try:
            return parsedate_to_datetime(after).timestamp()
        except (TypeError, ValueError):
            return None
    return None


class RateGate:
    """Spaces requests ``60 / per_minute`` seconds apart and holds all of them until ``not_before``."""

    def __init__(
        self, per_minute: float, *, clock: Clock = system_clock, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    def hold_until(self, when: float) -> None:
        self._not_before = max(self._not_before, when)

    async def wait(self) -> None:
        async with self._lock:
            now = self._clock()
            at = max(self._next, self._not_before, now)
            if at > now:
                await self._sleep(at - now)
            self._next = at + self._interval


def segment(value: str) -> str:
    """An id as one path segment, whatever it holds: percent-encoded whole (``/``, ``?``, ``#``
    and ``%`` included), so an id taken from an event can never reach another route; an id that
    is empty or a dot segment names nothing (``AutoNotFound``, like Auto's own 404)."""
    if value.strip(".") == "":
        raise AutoNotFound(f"{value!r} is not an id", status=404)
    return quote(value, safe="")


class AutoClient:
    """Calls to Elfa Auto; see the module docstring for the rules every call follows."""

    def __init__(
        self,
        *,
        base_url: str,
        credentials: AutoCredentials,
        http: httpx2.AsyncClient,
        requests_per_minute: float = 60,
        retry: RetryPolicy | None = None,
        clock: Clock = system_clock,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._creds = credentials
        self._http = http
        self._gate = RateGate(requests_per_minute, clock=clock, sleep=sleep)
        self._retry = retry or RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=30)
        self._clock = clock
        self._sleep = sleep
        self._rand = rand

    # -- the routes ---------------------------------------------------------------------------

    async def poll(self, query_id: str) -> m.QueryStatus:
        """Status, latest evaluation and executions of one query (free)."""
        return m.QueryStatus.model_validate(await self._read(f"/queries/{segment(query_id)}"))

    async def sessions(self, query_id: str) -> m.SessionList:
        return m.SessionList.model_validate(
            await self._read(f"/queries/{segment(query_id)}/sessions")
        )

    async def session(self, query_id: str, session_id: str) -> m.Session:
        return m.Session.model_validate(
            await self._read(f"/queries/{segment(query_id)}/sessions/{segment(session_id)}")
        )

    async def executions(
        self,
        *,
        query_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> m.ExecutionPage:
        """``GET /executions`` (API-key mode only)."""
        self._require_api_key("listing executions")
        params = {k: v for k, v in {"queryId": query_id, "status": status}.items() if v is not None}
        data = await self._call(
            "GET",
            "/executions",
            params={**params, "limit": limit, "offset": offset},
            idempotent=True,
        )
        return m.ExecutionPage.model_validate(data)

    async def list_queries(
        self,
        *,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> m.QueryPage:
        """``GET /queries`` (API-key mode; deployments without it answer 404 or 405)."""
        self._require_api_key("listing queries")
        params = {k: v for k, v in {"status": status, "search": search}.items() if v}
        data = await self._call(
            "GET", "/queries", params={**params, "limit": limit, "offset": offset}, idempotent=True
        )
        return m.QueryPage.model_validate(data)

    async def delete(self, query_id: str) -> m.Deleted:
        """``DELETE /queries/{id}``: only a terminal query can be deleted (else ``409``)."""
        self._require_api_key("deleting a query")
        return m.Deleted.model_validate(
            await self._call("DELETE", f"/queries/{segment(query_id)}", idempotent=True)
        )

    async def validate(self, query: Mapping[str, Any]) -> m.Validation:
        data = await self._call("POST", "/queries/validate", body=query, idempotent=True)
        return m.Validation.model_validate(data)

    async def create(self, query: Mapping[str, Any]) -> m.Created:
        data = await self._call("POST", "/queries", body=query, idempotent=False, paid=True)
        return m.Created.model_validate(data)

    async def cancel(self, query_id: str) -> m.Cancelled:
        """Cancel; a ``409`` means the query is already terminal, which is success too."""
        try:
            data = await self._call("POST", f"/queries/{segment(query_id)}/cancel", idempotent=True)
        except AutoRejected as exc:
            if exc.status == 409:
                return m.Cancelled(id=query_id, status="terminal", already_terminal=True)
            raise
        return m.Cancelled.model_validate(data)

    @contextlib.asynccontextmanager
    async def open_stream(self, query_id: str | None) -> AsyncIterator[httpx2.Response]:
        """Open the SSE stream of one query, or of the account (API key only); the caller reads
        the status and the body. No read timeout: the subscriber watches for silence itself."""
        if query_id is None:
            self._require_api_key("the account stream")
        path = f"/queries/{segment(query_id)}/stream" if query_id else "/queries/stream"
        await self._gate.wait()
        headers = {**self._headers("GET", path, b"", paid=False), "accept": "text/event-stream"}
        timeout = httpx2.Timeout(10.0, read=None)
        async with self._http.stream(
            "GET", self._base + path, headers=headers, timeout=timeout
        ) as response:
            if response.status_code in (429, 503):
                until = retry_at(response.headers, self._clock())
                if until is not None:
                    self._gate.hold_until(until)
            yield response

    def refusal(self, method: str, path: str, response: httpx2.Response) -> AutoError:
        """The ``AutoError`` for a 4xx answer (names the credential to check on 401/403)."""
        return _refusal(self._creds, method, path, response)

    # -- the mechanics ------------------------------------------------------------------------

    async def _read(self, path: str) -> Any:
        method = "POST" if self._creds.mode == "x402" else "GET"
        return await self._call(method, path, idempotent=True)

    def _require_api_key(self, what: str) -> None:
        if self._creds.mode != "api_key":
            raise AutoError(f"{what} is available in API-key mode only (set ELFA_API_KEY)")

    def _headers(self, method: str, path: str, body: bytes, *, paid: bool) -> dict[str, str]:
        headers = {"accept": "application/json"}
        creds = self._creds
        if creds.mode == "api_key" and creds.api_key:
            headers["x-elfa-api-key"] = creds.api_key
        if creds.mode == "x402" and creds.agent_secret:
            headers["x-elfa-agent-secret"] = creds.agent_secret
        if paid and creds.payment_header:
            headers["payment-signature"] = creds.payment_header
        if body:
            headers["content-type"] = "application/json"
        if method != "GET" and creds.hmac_secret:
            ts = str(int(self._clock()))
            headers["x-elfa-timestamp"] = ts
            headers["x-elfa-signature"] = sign_auto_request(
                creds.hmac_secret, timestamp=ts, method=method, path=path, body=body
            )
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool,
        paid: bool = False,
    ) -> Any:
        raw = orjson.dumps(body) if body is not None else b""
        attempt = 0
        while True:
            attempt += 1
            await self._gate.wait()
            headers = self._headers(method, path, raw, paid=paid)
            try:
                response = await self._http.request(
                    method, self._base + path, content=raw or None, params=params, headers=headers
                )
            except httpx2.TransportError as exc:
                failure = AutoUnavailable(
                    f"cannot reach Elfa Auto ({type(exc).__name__}) on {method} {path}"
                )
                if not idempotent or attempt >= self._retry.max_attempts:
                    raise failure from exc
                await self._backoff(attempt, path, failure)
                continue
            status = response.status_code
            if status < 400:
                return response.json() if response.content else {}
            if status == 429 or status >= 500:
                now = self._clock()
                until = retry_at(response.headers, now)
                if until is not None:
                    self._gate.hold_until(until)
                failure = AutoUnavailable(
                    f"Elfa Auto answered {status} on {method} {path}",
                    status=status,
                    detail=_detail(response),
                    retry_after=None if until is None else until - now,
                )
                # A 429 was not processed, so even a mutation may be sent again.
                if (status == 429 or idempotent) and attempt < self._retry.max_attempts:
                    if until is None:
                        await self._backoff(attempt, path, failure)
                    continue
                raise failure
            raise _refusal(self._creds, method, path, response)

    async def _backoff(self, attempt: int, path: str, failure: AutoError) -> None:
        delay = self._retry.ceiling(attempt) * self._rand()
        log.warning(
            "auto.retry", path=path, attempt=attempt, delay=round(delay, 3), error=str(failure)
        )
        await self._sleep(delay)


def _detail(response: httpx2.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or None
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "message", "details", "code") if data.get(k)]
        return "; ".join(parts) or None
    return None


def _refusal(
    creds: AutoCredentials, method: str, path: str, response: httpx2.Response
) -> AutoError:
    status = response.status_code
    detail = _detail(response)
    where = f"{method} {path}"
    suffix = f": {detail}" if detail else ""
    if status == 401:
        credential = "ELFA_API_KEY" if creds.mode == "api_key" else "ELFA_AGENT_SECRET"
        if method != "GET" and creds.hmac_secret:
            credential += " and ELFA_HMAC_SECRET"
        return AutoAuthError(
            f"Elfa Auto refused the credentials on {where} (401): check {credential}{suffix}",
            status=status,
            detail=detail,
        )
    if status == 403:
        return AutoAuthError(
            f"Auto is not enabled for this key (403 on {where}): check ELFA_API_KEY's plan{suffix}",
            status=status,
            detail=detail,
        )
    if status == 402:
        return AutoPaymentRequired(
            f"{where} needs an x402 payment (402): set the payment header{suffix}",
            status=status,
            detail=detail,
        )
    if status == 404:
        return AutoNotFound(f"not found (404 on {where}){suffix}", status=status, detail=detail)
    return AutoRejected(
        f"Elfa Auto rejected {where} ({status}){suffix}", status=status, detail=detail
    )
