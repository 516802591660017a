"""The webhook route, ``POST /webhooks/auto`` (the probes around it are in ``probes``).

The route is plain ASGI (no framework request object, no middleware): it reads at most
``max_body`` raw bytes, verifies the signature over them, normalizes, and answers ``202`` only
after the event is stored and queued. Refusals: ``401`` signature, ``405`` method, ``413`` size,
``415`` content type, ``400`` body, ``503`` store or queue down (Auto may retry; nothing is
acknowledged that was not stored).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from starlette.types import Receive, Scope, Send

from autorunner import signatures
from autorunner.clock import Clock, system_clock
from autorunner.errors import InvalidEvent, SignatureError, Unavailable
from autorunner.events import derived_event_id, normalize_webhook, parse_json_object
from autorunner.ingest import Ingestor
from autorunner.logs import shown
from autorunner.metrics import Metrics
from autorunner.records import RawDelivery
from autorunner.store.base import Store
from autorunner.tracing import OFF, Tracing

log = structlog.get_logger("autorunner.ingress")

WEBHOOK_PATH = "/webhooks/auto"
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "x-auto-event-id",
        "x-auto-signature-timestamp",
        "x-auto-timestamp",
        "webhook-id",
        "webhook-timestamp",
    }
)
"""Headers recorded with a delivery; signatures and anything else are never stored or logged."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookConfig:
    """What the webhook route enforces."""

    secrets: signatures.Secrets
    tolerance: float = signatures.DEFAULT_TOLERANCE
    allow_unsigned: bool = False
    max_body: int = 64 * 1024
    store_timeout: float = 5.0


class BodyTooLarge(Exception):
    """The request body passed the configured limit."""


class ClientGone(Exception):
    """The client went away before its body was complete: nothing is stored or answered."""


class WebhookApp:
    """The ASGI callable for ``POST /webhooks/auto``."""

    def __init__(
        self,
        *,
        ingestor: Ingestor,
        store: Store,
        config: WebhookConfig,
        metrics: Metrics,
        clock: Clock = system_clock,
        tracing: Tracing = OFF,
    ) -> None:
        self._ingestor = ingestor
        self._tracing = tracing
        self._store = store
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._received = metrics.received.labels("webhook")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        attributes = {"http.request.method": method, "http.route": WEBHOOK_PATH}
        with self._tracing.span(f"{method} {WEBHOOK_PATH}", attributes, kind="server") as span:
            try:
                status, body = await self._handle(scope, receive)
            except ClientGone:
                self._metrics.rejected.labels("webhook", "client_gone").inc()
                span.fail("client gone")
                return
            except Exception:  # the hostile-input tests reach none; if one does, no traceback leaks
                log.exception("webhook.failed")
                status, body = 500, {"error": "internal", "detail": "unexpected failure; retry"}
            span.set({"http.response.status_code": status, "error.type": body.get("error")})
            await send_json(send, status, body, retry_after=status == 503)
        if status in (200, 202):
            self._metrics.ack_latency.observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:  # noqa: PLR0911 - one return per refusal
        self._received.inc()
        if scope["method"] != "POST":
            return self._refuse(405, "method_not_allowed", "use POST")
        try:
            headers = signatures.header_map(scope["headers"])
        except SignatureError as exc:
            return self._refuse(401, exc.reason, str(exc))
        content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            return self._refuse(
                415,
                "content_type",
                f"content type must be application/json, got {shown(content_type)}",
            )
        try:
            raw = await _read_body(receive, headers, self._config.max_body)
        except BodyTooLarge:
            return self._refuse(413, "too_large", f"body is over {self._config.max_body} bytes")
        now = self._clock()
        try:
            with self._tracing.span("verify"):
                verified = signatures.verify(
                    headers,
                    raw,
                    secrets=self._config.secrets,
                    now=now,
                    tolerance=self._config.tolerance,
                    allow_unsigned=self._config.allow_unsigned,
                )
        except SignatureError as exc:
            return self._refuse(401, exc.reason, str(exc))
        delivery = RawDelivery(
            received_at=now,
            headers={k: v for k, v in headers.items() if k in KEPT_HEADERS},
            body=raw.decode("utf-8", errors="replace"),
        )
        try:
            payload = parse_json_object(raw)
            event = normalize_webhook(
                payload,
                delivery_id=verified.delivery_id,
                fallback_id=lambda: derived_event_id(str(verified.timestamp).encode(), raw),
            )
        except InvalidEvent as exc:
            await self._keep_rejected(f"invalid_body: {exc}", delivery)
            return self._refuse(400, "invalid_body", str(exc))
        try:
            async with asyncio.timeout(self._config.store_timeout):
                result = await self._ingestor.ingest(event, delivery)
        except (Unavailable, TimeoutError) as exc:
            self._metrics.unavailable.inc()
            log.error(  # noqa: TRY400 - an expected outage; no traceback wanted
                "webhook.unavailable", event_id=event.event_id, error=str(exc) or "timeout"
            )
            return 503, {"error": "store_unavailable", "detail": "event not stored; retry later"}
        if result.duplicate:
            return 200, {
                "duplicate": True,
                "eventId": event.event_id,
                "duplicateOf": result.duplicate_of,
            }
        return 202, {"accepted": True, "eventId": event.event_id}

    def _refuse(self, status: int, reason: str, detail: str) -> tuple[int, dict[str, Any]]:
        self._metrics.rejected.labels("webhook", reason).inc()
        log.warning("webhook.rejected", status=status, reason=reason, detail=detail)
        return status, {"error": reason, "detail": detail}

    async def _keep_rejected(self, reason: str, delivery: RawDelivery) -> None:
        try:
            await asyncio.wait_for(
                self._store.record_rejected(reason, delivery), self._config.store_timeout
            )
        except (Unavailable, TimeoutError) as exc:
            log.warning("webhook.rejected_not_kept", reason=reason, error=str(exc) or "timeout")


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(
    send: Send, status: int, body: dict[str, Any], *, retry_after: bool = False
) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
