"""Worker-side context from Auto: the query's status and executions, and LLM output when relevant.

A failed fetch (network, 429, 5xx) raises ``AutoUnavailable``, a transient error: the job is
retried. A ``404`` is recorded in the context and does not block the run. The result is kept in
the run record and handed to the decider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, Protocol

from autorunner.auto_client import AutoClient
from autorunner.auto_models import QueryStatus
from autorunner.clock import Clock, system_clock
from autorunner.errors import AutoNotFound
from autorunner.events import Event

CONTEXT_PARTS = frozenset({"query", "llm_session"})
"""What a route may ask for: the query's status and executions; the latest LLM session output
(fetched only when the event's execution is an LLM one)."""


class ContextSource(Protocol):
    """Fetches what a decider may need to know about an event."""

    async def query(self, event: Event) -> dict[str, Any] | None:
        """Auto's record of the event's query (title, description, definition), whichever
        channel delivered the event; ``None`` when it cannot be known (``facts.resolve``)."""

    async def fetch(self, event: Event, wants: Collection[str] = CONTEXT_PARTS) -> dict[str, Any]:
        """A JSON-able mapping of the parts in ``wants``; empty when there is nothing to fetch."""


class NoContext:
    """Used when no Elfa credentials are configured: decisions see only the event."""

    async def query(self, event: Event) -> dict[str, Any] | None:
        return None

    async def fetch(self, event: Event, wants: Collection[str] = CONTEXT_PARTS) -> dict[str, Any]:
        return {}


class AutoContext:
    """Polls the event's query; for an ``llm`` execution also reads its latest session output.

    Auto's plans allow 60 to 120 requests a minute, so one poll serves every event of the same
    query for ``cache_seconds`` (concurrent fetches share the request in flight).
    """

    def __init__(
        self, client: AutoClient, *, cache_seconds: float = 5.0, clock: Clock = system_clock
    ) -> None:
        self._client = client
        self._ttl = cache_seconds
        self._clock = clock
        self._polls: dict[str, tuple[float, asyncio.Task[QueryStatus]]] = {}

    async def _poll(self, query_id: str) -> QueryStatus:
        now = self._clock()
        cached = self._polls.get(query_id)
        if (
            cached is None
            or cached[0] <= now
            or (cached[1].done() and cached[1].exception() is not None)
        ):
            cached = (now + self._ttl, asyncio.ensure_future(self._client.poll(query_id)))
            self._polls = {k: v for k, v in self._polls.items() if v[0] > now}
            self._polls[query_id] = cached
        return await asyncio.shield(cached[1])

    async def query(self, event: Event) -> dict[str, Any] | None:
        """The query's record from the shared poll; ``None`` for a query Auto no longer has."""
        if event.query_id is None:
            return None
        try:
            status = await self._poll(event.query_id)
        except AutoNotFound:
            return None
        return status.model_dump(mode="json", exclude={"executions", "latest_evaluation"})

    async def fetch(self, event: Event, wants: Collection[str] = CONTEXT_PARTS) -> dict[str, Any]:
        """The parts the route asked for; a route asking for nothing costs no request beyond
        the poll ``query`` shares."""
        if event.query_id is None or not wants:
            return {}
        try:
            status = await self._poll(event.query_id)
        except AutoNotFound as exc:
            return {"query": None, "query_error": str(exc)}
        context: dict[str, Any] = {}
        if "query" in wants:
            context["query"] = status.model_dump(mode="json")
        mine = [e for e in status.executions if e.id == event.execution_id]
        if "llm_session" in wants and any(e.type == "llm" for e in (mine or status.executions)):
            context["llm_session"] = await self._latest_session(event.query_id)
        return context

    async def latest_session(self, query_id: str) -> dict[str, Any] | None:
        """The output of the query's most recent LLM session (the llm decider's tool)."""
        return await self._latest_session(query_id)

    async def _latest_session(self, query_id: str) -> dict[str, Any] | None:
        try:
            listing = await self._client.sessions(query_id)
            sessions = [s for s in listing.sessions if s.session_id]
            if not sessions:
                return None
            latest = max(sessions, key=lambda s: s.executed_at or "")
            assert latest.session_id is not None  # noqa: S101 - filtered above
            session = await self._client.session(query_id, latest.session_id)
        except AutoNotFound as exc:
            return {"error": str(exc)}
        return session.model_dump(mode="json")
