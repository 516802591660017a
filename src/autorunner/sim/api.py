"""The simulator's Auto API: every route of auto-contract §2 and every call Elfa's official SDK
(``elfa-sdk`` 6.3) makes — queries (list, search, poll, cancel, delete), executions, LLM
sessions, drafts, ``validate-symbol`` and ``chat`` — in API-key and x402 mode.

Handlers answer from the ``Simulator``'s state, after its auth and fault gate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from autorunner.sim.simulator import Simulator

TERMINAL = frozenset({"triggered", "expired", "cancelled", "failed"})
EXCHANGES = frozenset({"hyperliquid", "binance"})
LISTED = frozenset({"BTC", "ETH", "SOL", "DOGE", "XRP", "BNB", "AVAX", "LINK"})
"""What ``validate-symbol`` knows as tradable (a base asset, or one quoted in USD/USDT/USDC)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SimQuery:
    id: str
    body: dict[str, Any]
    status: str = "active"
    executions: list[dict[str, Any]] = field(default_factory=list)

    created_at: str = field(default_factory=now_iso)

    @property
    def action(self) -> dict[str, Any]:
        actions = self.body.get("query", {}).get("actions") or [{}]
        return actions[0] if isinstance(actions[0], dict) else {}

    def summary(self) -> dict[str, Any]:
        """The query as ``GET /queries`` lists it (its action's credentials left out)."""
        return {
            "id": self.id,
            "queryId": self.id,
            "title": self.body.get("title"),
            "description": self.body.get("description"),
            "status": self.status,
            "createdAt": self.created_at,
            "executions": len(self.executions),
        }


@dataclass
class SimDraft:
    id: str
    body: dict[str, Any]
    status: str = "draft"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.body.get("title"),
            "description": self.body.get("description"),
            "query": self.body.get("query"),
            "status": self.status,
            "valid": isinstance(self.body.get("query"), dict),
            "visibility": self.body.get("visibility", "private"),
        }


class AutoApi:
    """The contract's routes over one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[Route]:
        """The routes under ``/v2/auto`` (and ``/x402/v2/auto``); fixed paths before ``{qid}``."""
        return [
            Route("/queries/validate", self.validate, methods=["POST"]),
            Route("/queries/stream", self.stream_account, methods=["GET"]),
            Route("/queries/drafts", self.list_drafts, methods=["GET"]),
            Route("/queries/drafts", self.upsert_draft, methods=["POST"]),
            Route("/queries/drafts/{did}", self.get_draft, methods=["GET"]),
            Route("/queries/drafts/{did}", self.delete_draft, methods=["DELETE"]),
            Route("/queries/drafts/{did}/validate", self.validate_draft, methods=["POST"]),
            Route("/queries/drafts/{did}/convert", self.convert_draft, methods=["POST"]),
            Route("/queries", self.create, methods=["POST"]),
            Route("/queries", self.list_queries, methods=["GET"]),
            Route("/queries/{qid}", self.poll, methods=["GET", "POST"]),
            Route("/queries/{qid}", self.delete, methods=["DELETE"]),
            Route("/queries/{qid}/cancel", self.cancel, methods=["POST"]),
            Route("/queries/{qid}/stream", self.stream_query, methods=["GET"]),
            Route("/queries/{qid}/sessions", self.sessions, methods=["GET", "POST"]),
            Route("/queries/{qid}/sessions/{sid}", self.session, methods=["GET", "POST"]),
            Route("/executions", self.list_executions, methods=["GET"]),
            Route("/executions/{eid}", self.get_execution, methods=["GET"]),
            Route(
                "/validate-symbol/{exchange}/{symbol:path}", self.validate_symbol, methods=["GET"]
            ),
            Route("/chat", self.chat, methods=["POST"]),
        ]

    # -- queries beyond the lifecycle: the SDK's listing ------------------------------------

    async def list_queries(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=False):
            return refused
        params = request.query_params
        status, search = params.get("status"), (params.get("search") or "").lower()
        found = [
            q
            for q in self.sim.queries.values()
            if status in (None, q.status)
            and (not search or search in str(q.body.get("title", "")).lower())
        ]
        page, limit, offset = _page(found, params)
        return JSONResponse(
            {
                "queries": [q.summary() for q in page],
                "total": len(found),
                "limit": limit,
                "offset": offset,
            }
        )

    # -- drafts -------------------------------------------------------------------------------

    async def list_drafts(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=False):
            return refused
        params = request.query_params
        search = (params.get("search") or "").lower()
        found = [
            d
            for d in self.sim.drafts.values()
            if params.get("status") in (None, d.status)
            and (not search or search in str(d.body.get("title", "")).lower())
        ]
        page, limit, offset = _page(found, params)
        return JSONResponse(
            {
                "drafts": [d.to_dict() for d in page],
                "total": len(found),
                "limit": limit,
                "offset": offset,
            }
        )

    async def upsert_draft(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=True):
            return refused
        body = orjson.loads(await request.body() or b"{}")
        draft = self.sim.drafts.get(str(body.get("id"))) or SimDraft(id=str(uuid.uuid4()), body={})
        draft.body = {**draft.body, **{k: v for k, v in body.items() if k != "id"}}
        self.sim.drafts[draft.id] = draft
        return JSONResponse(draft.to_dict())

    async def _draft(self, request: Request, *, mutation: bool) -> SimDraft | Response:
        if refused := await self.sim.gate(request, mutation=mutation):
            return refused
        draft = self.sim.drafts.get(request.path_params["did"])
        return draft if draft is not None else JSONResponse({"error": "draft not found"}, 404)

    async def get_draft(self, request: Request) -> Response:
        draft = await self._draft(request, mutation=False)
        return draft if isinstance(draft, Response) else JSONResponse(draft.to_dict())

    async def delete_draft(self, request: Request) -> Response:
        draft = await self._draft(request, mutation=True)
        if isinstance(draft, Response):
            return draft
        del self.sim.drafts[draft.id]
        return JSONResponse({"success": True})

    async def validate_draft(self, request: Request) -> Response:
        draft = await self._draft(request, mutation=True)
        if isinstance(draft, Response):
            return draft
        return JSONResponse(_validation(draft.body))

    async def convert_draft(self, request: Request) -> Response:
        draft = await self._draft(request, mutation=True)
        if isinstance(draft, Response):
            return draft
        if not isinstance(draft.body.get("query"), dict):
            return JSONResponse({"error": "draft failed validation"}, 422)
        query = SimQuery(id=str(uuid.uuid4()), body=dict(draft.body))
        self.sim.queries[query.id] = query
        draft.status = "converted"
        return JSONResponse(
            {
                "draftId": draft.id,
                "convertedAt": now_iso(),
                "query": {"id": query.id, "status": query.status},
            }
        )

    # -- the rest of the SDK's surface --------------------------------------------------------

    async def validate_symbol(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=False):
            return refused
        exchange, symbol = request.path_params["exchange"], request.path_params["symbol"]
        if exchange not in EXCHANGES:
            return JSONResponse({"error": f"unknown exchange {exchange!r}"}, 400)
        base, _, quote = symbol.upper().partition("/")
        supported = base in LISTED and quote in ("", "USD", "USDT", "USDC")
        return JSONResponse({"supported": "true" if supported else "false"})

    async def chat(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=True):
            return refused
        if request.url.path.startswith("/x402/") and not request.headers.get("payment-signature"):
            return JSONResponse(
                {"code": "PAYMENT_REQUIRED", "message": "chat needs an x402 payment"}, 402
            )
        body = orjson.loads(await request.body() or b"{}")
        message = str(body.get("message") or "")
        if not message:
            return JSONResponse({"error": "message is required"}, 400)
        return JSONResponse(
            {
                "sessionId": str(body.get("sessionId") or uuid.uuid4()),
                "response": f"(simulated) noted: {message[:200]}",
                "title": message[:60],
                "reasoning": None,
                "planIds": [],
                "credits": 1,
            }
        )

    async def validate(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=True):
            return refused
        return JSONResponse(_validation(orjson.loads(await request.body() or b"{}")))

    async def create(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=True):
            return refused
        body = orjson.loads(await request.body() or b"{}")
        if not isinstance(body.get("query"), dict):
            return JSONResponse(
                {"error": "query failed validation", "details": "query is required"}, 422
            )
        query = SimQuery(id=str(uuid.uuid4()), body=body)
        self.sim.queries[query.id] = query
        return JSONResponse({"id": query.id, "status": query.status, "cost": 1}, 201)

    async def poll(self, request: Request) -> Response:
        query = await self.sim.checked(request, mutation=False)
        if isinstance(query, Response):
            return query
        return JSONResponse(
            {
                "queryId": query.id,
                "status": query.status,
                "title": query.body.get("title"),
                "description": query.body.get("description"),
                "query": query.body.get("query"),
                "credits": 0,
                "latestEvaluation": {
                    "evaluatedAt": now_iso(),
                    "wouldTriggerNow": False,
                    "conditionStates": [],
                    "matchingConditions": 0,
                    "totalConditions": 1,
                },
                "executions": query.executions,
            }
        )

    async def cancel(self, request: Request) -> Response:
        query = await self.sim.checked(request, mutation=True)
        if isinstance(query, Response):
            return query
        if query.status in TERMINAL:
            return JSONResponse({"error": f"query is {query.status}"}, 409)
        query.status = "cancelled"
        self.sim.end_streams(query)
        return JSONResponse({"id": query.id, "status": "cancelled", "cancelledAt": now_iso()})

    async def delete(self, request: Request) -> Response:
        query = await self.sim.checked(request, mutation=True)
        if isinstance(query, Response):
            return query
        if query.status not in TERMINAL:
            return JSONResponse({"error": "cancel the query first"}, 409)
        del self.sim.queries[query.id]
        return JSONResponse({"id": query.id, "deletedAt": now_iso()})

    async def sessions(self, request: Request) -> Response:
        query = await self.sim.checked(request, mutation=False)
        if isinstance(query, Response):
            return query
        llm = [e for e in query.executions if e["type"] == "llm"]
        return JSONResponse(
            {
                "queryId": query.id,
                "sessions": [
                    {
                        "sessionId": f"s-{e['id']}",
                        "status": "completed",
                        "executedAt": e["createdAt"],
                    }
                    for e in llm
                ],
            }
        )

    async def session(self, request: Request) -> Response:
        query = await self.sim.checked(request, mutation=False)
        if isinstance(query, Response):
            return query
        sid = request.path_params["sid"]
        if not any(f"s-{e['id']}" == sid for e in query.executions):
            return JSONResponse({"error": "session not found"}, 404)
        return JSONResponse(
            {
                "sessionId": sid,
                "queryId": query.id,
                "title": None,
                "analysisType": "trade",
                "createdAt": now_iso(),
                "messages": [
                    {
                        "query": "Should I act?",
                        "response": "hold",
                        "status": "completed",
                        "analysisType": "trade",
                        "timestamp": now_iso(),
                    }
                ],
            }
        )

    async def list_executions(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=False):
            return refused
        qid = request.query_params.get("queryId")
        found = [e for q in self.sim.queries.values() if qid in (None, q.id) for e in q.executions]
        limit = int(request.query_params.get("limit", 100))
        offset = int(request.query_params.get("offset", 0))
        page = found[offset : offset + limit]
        return JSONResponse(
            {
                "data": page,
                "pagination": {
                    "total": len(found),
                    "limit": limit,
                    "offset": offset,
                    "hasMore": offset + limit < len(found),
                },
            }
        )

    async def get_execution(self, request: Request) -> Response:
        if refused := await self.sim.gate(request, mutation=False):
            return refused
        for query in self.sim.queries.values():
            for execution in query.executions:
                if execution["id"] == request.path_params["eid"]:
                    return JSONResponse(execution)
        return JSONResponse({"error": "execution not found"}, 404)

    async def stream_query(self, request: Request) -> Response:
        query = await self.sim.checked(request, mutation=False)
        if isinstance(query, Response):
            return query
        if query.status in TERMINAL:
            return JSONResponse({"error": "query already terminal"}, 410)
        return self.sim.stream(query.id)

    async def stream_account(self, request: Request) -> Response:
        if request.url.path.startswith("/x402/"):
            return JSONResponse({"error": "not available in x402 mode"}, 404)
        if refused := await self.sim.gate(request, mutation=False):
            return refused
        return self.sim.stream(None)


OPERATORS = frozenset({">", "<", ">=", "<=", "==", "!=", "crosses_above", "crosses_below"})


def _validation(body: dict[str, Any]) -> dict[str, Any]:
    query = body.get("query")
    errors = [] if isinstance(query, dict) else ["query is required"]
    if isinstance(query, dict):
        errors += [
            f"unknown operator {leaf.get('operator')!r}"
            for leaf in _leaves(query.get("conditions"))
            if leaf.get("operator") not in OPERATORS
        ]
    cost = None if errors else 1
    return {
        "valid": not errors,
        "errors": errors,
        "warnings": [],
        "estimatedCost": cost,
        "estimatedCredits": cost,
    }


def _leaves(node: Any) -> list[dict[str, Any]]:
    """The leaf conditions of a condition tree (``{AND|OR: [...]}`` groups)."""
    if isinstance(node, list):
        return [leaf for item in node for leaf in _leaves(item)]
    if not isinstance(node, dict):
        return []
    groups = [node[k] for k in ("AND", "OR") if k in node]
    return [leaf for g in groups for leaf in _leaves(g)] if groups else [node]


def _page(items: list[Any], params: Any) -> tuple[list[Any], int, int]:
    """A page of ``items`` by the ``limit`` (default 50) and ``offset`` query parameters."""
    limit = max(1, min(int(params.get("limit") or 50), 500))
    offset = max(0, int(params.get("offset") or 0))
    return items[offset : offset + limit], limit, offset
