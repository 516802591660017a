"""``autorunner simulate``: a local fake Elfa Auto that speaks the contract (auto-contract.md).

It keeps queries and executions in memory, checks API keys, agent secrets and request signatures,
and when a query triggers it records an execution, POSTs a ``v1``-signed webhook to the query's
URL (retrying non-2xx) and pushes a frame to the query's and the account's SSE streams in the
chosen frame version. Control routes under ``/_sim`` fire triggers and inject faults: dropped
streams (and refusing new ones for a while), duplicate and reordered webhooks, bad signatures,
``429``s and ``5xx``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from autorunner.signatures import sign_auto_request, sign_elfa
from autorunner.sim.api import TERMINAL, AutoApi, SimDraft, SimQuery, now_iso
from autorunner.sim.frames import (
    Firing,
    FrameVersion,
    WebhookShape,
    end_frame,
    stream_frame,
    webhook_body,
)

log = structlog.get_logger("autorunner.sim.simulator")


@dataclass
class Faults:
    """What to get wrong, and how often."""

    duplicate_webhooks: float = 0.0
    reorder_webhooks: bool = False
    bad_signature: float = 0.0
    rate_limit_next: int = 0
    error_next: int = 0
    refuse_streams_until: float = 0.0


@dataclass
class SimConfig:
    api_key: str | None = None
    agent_secret: str | None = None
    hmac_secret: str | None = None
    webhook_secret: str = "sim-webhook-secret"
    frame_version: FrameVersion = "C"
    webhook_shape: WebhookShape = "canonical"
    keepalive: float = 15.0


class Simulator:
    """State and behaviour of the fake Auto; ``app`` is its ASGI application."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.queries: dict[str, SimQuery] = {}
        self.drafts: dict[str, SimDraft] = {}
        self.faults = Faults()
        self.streams: dict[str | None, set[asyncio.Queue[bytes | None]]] = {}
        self.stats: dict[str, int] = {
            "triggers": 0,
            "webhooks_sent": 0,
            "webhook_failures": 0,
            "frames": 0,
            "drops": 0,
            "rate_limited": 0,
            "errors_injected": 0,
        }
        self._http = httpx2.AsyncClient(timeout=5)
        self._tasks: set[asyncio.Task[None]] = set()
        api = AutoApi(self).routes()
        control = [
            Route("/trigger", self.control_trigger, methods=["POST"]),
            Route("/faults", self.control_faults, methods=["POST"]),
            Route("/drop-streams", self.control_drop, methods=["POST"]),
            Route("/stats", self.control_stats, methods=["GET"]),
        ]
        self.app = Starlette(
            routes=[
                Mount("/v2/auto", routes=api),
                Mount("/x402/v2/auto", routes=api),
                Mount("/_sim", routes=control),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        yield
        for queues in self.streams.values():
            for queue in queues:
                queue.put_nowait(None)
        await self._http.aclose()

    # -- auth and faults ---------------------------------------------------------------------

    async def gate(self, request: Request, *, mutation: bool) -> Response | None:
        if self.faults.rate_limit_next > 0:
            self.faults.rate_limit_next -= 1
            self.stats["rate_limited"] += 1
            reset = int(time.time()) + 1
            return JSONResponse(
                {"error": "rate limited"},
                429,
                headers={"x-ratelimit-reset": str(reset), "retry-after": "1"},
            )
        if self.faults.error_next > 0:
            self.faults.error_next -= 1
            self.stats["errors_injected"] += 1
            return JSONResponse(
                {"error": "temporarily unavailable"}, 503, headers={"retry-after": "1"}
            )
        x402 = request.url.path.startswith("/x402/")
        if x402:
            if (
                self.config.agent_secret
                and request.headers.get("x-elfa-agent-secret") != self.config.agent_secret
            ):
                return JSONResponse(
                    {"code": "UNAUTHORIZED", "message": "missing or wrong agent secret"}, 401
                )
        elif self.config.api_key and request.headers.get("x-elfa-api-key") != self.config.api_key:
            return JSONResponse({"error": "invalid api key"}, 401)
        if mutation and self.config.hmac_secret:
            ts = request.headers.get("x-elfa-timestamp", "")
            body = await request.body()
            mounted = request.url.path.split("/v2/auto", 1)[1]
            expected = sign_auto_request(
                self.config.hmac_secret,
                timestamp=ts,
                method=request.method,
                path=mounted,
                body=body,
            )
            fresh = ts.isdigit() and abs(time.time() - int(ts)) <= 30
            if not fresh or request.headers.get("x-elfa-signature") != expected:
                return JSONResponse({"error": "invalid request signature"}, 401)
        return None

    async def checked(self, request: Request, *, mutation: bool) -> SimQuery | Response:
        """The path's query after the auth and fault gate, or the refusal to send."""
        if refused := await self.gate(request, mutation=mutation):
            return refused
        query = self.queries.get(request.path_params["qid"])
        return query if query is not None else JSONResponse({"error": "query not found"}, 404)

    def stream(self, key: str | None) -> Response:
        if time.time() < self.faults.refuse_streams_until:
            return JSONResponse({"code": "STREAM_UNAVAILABLE"}, 503, headers={"retry-after": "1"})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.streams.setdefault(key, set()).add(queue)

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b'event: ready\ndata: {"connected": true}\n\n'
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=self.config.keepalive)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    yield item
            finally:
                self.streams.get(key, set()).discard(queue)

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    def end_streams(self, query: SimQuery) -> None:
        end = end_frame(query_id=query.id, status=query.status)
        for queue in list(self.streams.get(query.id, set())):
            queue.put_nowait(end)
            queue.put_nowait(None)

    # -- triggering ----------------------------------------------------------------------------

    def trigger(
        self,
        query: SimQuery,
        *,
        channels: frozenset[str] = frozenset({"webhook", "sse"}),
        symbol: str | None = None,
    ) -> dict[str, Any]:
        """Fire one trigger: an execution, a webhook delivery and a stream frame."""
        kind = "llm" if query.action.get("type") == "llm" else "notification"
        execution = {
            "id": str(uuid.uuid4()),
            "queryId": query.id,
            "type": kind,
            "status": "success",
            "createdAt": now_iso(),
        }
        if symbol:
            execution["symbol"] = symbol
        query.executions.append(execution)
        self.stats["triggers"] += 1
        firing = self.firing(query, execution)
        if "sse" in channels:
            frame = stream_frame(self.config.frame_version, firing)
            for key in (query.id, None):
                for queue in list(self.streams.get(key, set())):
                    queue.put_nowait(frame)
                    self.stats["frames"] += 1
        url = query.action.get("params", {}).get("url")
        if "webhook" in channels and query.action.get("type") == "webhook" and url:
            copies = 2 if random.random() < self.faults.duplicate_webhooks else 1
            for _ in range(copies):
                self._spawn(self._deliver(query, firing, url))
        return execution

    @staticmethod
    def firing(query: SimQuery, execution: dict[str, Any]) -> Firing:
        """How every channel describes ``execution`` of ``query``."""
        title = str(query.body.get("title") or "Auto query")
        return Firing(
            query_id=query.id,
            title=title,
            text=str(query.body.get("description") or "conditions met"),
            execution=execution,
            symbol=execution.get("symbol"),
        )

    async def _deliver(self, query: SimQuery, firing: Firing, url: str) -> None:
        if self.faults.reorder_webhooks:
            await asyncio.sleep(random.random() * 0.2)
        event_id, body = webhook_body(self.config.webhook_shape, firing)
        secret = query.action.get("params", {}).get("signingSecret") or self.config.webhook_secret
        for attempt in range(6):
            ts = str(int(time.time()))
            signature = sign_elfa(secret, timestamp=ts, event_id=event_id, body=body)
            if random.random() < self.faults.bad_signature:
                signature = "v1=" + "0" * 64
            headers = {
                "content-type": "application/json",
                "x-auto-event-id": event_id,
                "x-auto-signature-timestamp": ts,
                "x-auto-signature": signature,
            }
            try:
                response = await self._http.post(url, content=body, headers=headers)
                self.stats["webhooks_sent"] += 1
                if response.status_code < 300:
                    return
            except httpx2.TransportError:
                pass
            self.stats["webhook_failures"] += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def tick(self) -> None:
        """One scheduled round: every active query triggers once."""
        for query in list(self.queries.values()):
            if query.status not in TERMINAL:
                self.trigger(query)

    # -- control -------------------------------------------------------------------------------

    async def control_trigger(self, request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        query = self.queries.get(body.get("queryId", ""))
        if query is None:
            return JSONResponse({"error": "query not found"}, 404)
        channels = frozenset(body.get("channels") or ("webhook", "sse"))
        symbol = body.get("symbol")
        executions = [
            self.trigger(query, channels=channels, symbol=str(symbol) if symbol else None)
            for _ in range(int(body.get("count", 1)))
        ]
        if body.get("terminal"):
            query.status = str(body["terminal"])
            self.end_streams(query)
        return JSONResponse(
            {
                "executions": [e["id"] for e in executions],
                "created": {e["id"]: e["createdAt"] for e in executions},
            }
        )

    async def control_faults(self, request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        for name, value in body.items():
            if hasattr(self.faults, name):
                setattr(self.faults, name, value)
        return JSONResponse(vars(self.faults))

    async def control_drop(self, request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        self.faults.refuse_streams_until = time.time() + float(body.get("refuse_for", 0))
        dropped = 0
        for queues in self.streams.values():
            for queue in list(queues):
                queue.put_nowait(None)
                dropped += 1
        self.stats["drops"] += 1
        return JSONResponse({"dropped": dropped})

    async def control_stats(self, request: Request) -> Response:
        open_streams = sum(len(q) for q in self.streams.values())
        return JSONResponse(
            {**self.stats, "open_streams": open_streams, "queries": len(self.queries)}
        )
