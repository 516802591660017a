"""The HTTP surface around the webhook: ``/healthz`` (alive), ``/readyz`` (store, queue,
heartbeat, lag), ``/metrics`` (Prometheus), and a JSON 404; the webhook path bypasses the
router entirely (``build_app``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from autorunner.approval_desk import TELEGRAM_PATH
from autorunner.errors import Unavailable
from autorunner.ingress import WEBHOOK_PATH, WebhookApp, send_json
from autorunner.metrics import Metrics
from autorunner.queue.base import Queue
from autorunner.store.base import Audit

log = structlog.get_logger("autorunner.probes")

Probe = Callable[[], Awaitable[dict[str, Any]]]
"""Returns readiness details; raises ``Unavailable`` or returns ``{"ok": False, …}``."""


def build_app(
    *,
    webhook: WebhookApp | None,
    metrics: Metrics,
    audit: Audit,
    queue: Queue,
    ready: Probe,
    console: ASGIApp | None = None,
    telegram: Callable[[Request], Awaitable[Response]] | None = None,
) -> ASGIApp:
    """The whole ASGI app; the webhook path bypasses the router entirely. Without ``webhook``
    (a worker process) only the probes and metrics are served; ``console`` is mounted at
    ``/console``."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(_: Request) -> Response:
        try:
            detail = await ready()
        except Unavailable as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=503)
        return JSONResponse(detail, status_code=200 if detail.get("ok") else 503)

    async def metrics_endpoint(_: Request) -> Response:
        try:
            metrics.observe_stats(await queue.stats(), await audit.stats(done=False))
        except Unavailable as exc:
            log.warning("metrics.stats_unavailable", error=str(exc))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 404, {"error": "not_found", "detail": f"no route {scope['path']}"})

    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    if console is not None:
        routes.append(Mount("/console", app=console))
    if telegram is not None:
        routes.append(Route(TELEGRAM_PATH, telegram, methods=["POST"]))
    router = Router(routes=routes, default=not_found)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if webhook is not None and scope["type"] == "http" and scope["path"] == WEBHOOK_PATH:
            await webhook(scope, receive, send)
        else:
            await router(scope, receive, send)

    return app
