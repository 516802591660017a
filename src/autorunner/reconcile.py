"""Gap recovery: poll Auto's executions and feed every one through the insert-if-new path.

Auto's stream is live-only, so triggers that fired while the runner was disconnected exist
only in the poll. Each execution becomes an ``Event`` whose execution id the store holds unique,
so executions that already arrived by webhook or SSE are counted as duplicates and run nothing.
"""

from __future__ import annotations

import time

import orjson
import structlog

from autorunner.auto_client import AutoClient
from autorunner.auto_models import Execution
from autorunner.errors import InvalidEvent
from autorunner.events import normalize_execution
from autorunner.ingest import Ingestor
from autorunner.records import RawDelivery

log = structlog.get_logger("autorunner.reconcile")

PAGE = 100


class Reconciler:
    """Polls one query (or the whole account) and ingests what the store has not seen."""

    def __init__(self, *, client: AutoClient, ingestor: Ingestor, max_pages: int = 20) -> None:
        self._client = client
        self._ingestor = ingestor
        self._max_pages = max_pages

    async def reconcile(self, query_id: str | None) -> int:
        """Returns how many executions were new to the store."""
        executions = await self._executions(query_id)
        new = 0
        for execution in executions:
            payload = execution.model_dump(mode="json")
            try:
                event = normalize_execution(payload, query_id=query_id)
            except InvalidEvent:
                continue
            raw = RawDelivery(
                received_at=time.time(),
                headers={"source": "poll"},
                body=orjson.dumps(payload).decode(),
            )
            result = await self._ingestor.ingest(event, raw)
            new += not result.duplicate
        log.info(
            "reconcile.done",
            query_id=query_id,
            seen=len(executions),
            new=new,
            known=len(executions) - new,
        )
        return new

    async def _executions(self, query_id: str | None) -> list[Execution]:
        if query_id is not None:
            return (await self._client.poll(query_id)).executions
        found: list[Execution] = []
        for page in range(self._max_pages):
            batch = await self._client.executions(limit=PAGE, offset=page * PAGE)
            found += batch.data
            if not batch.pagination.has_more:
                break
        return found
