"""Tolerant models of Elfa Auto's responses: every documented variant parses, unknown fields pass.

Auto is a beta API whose shapes changed; each model accepts all the documented spellings
(``queryId`` or ``id``, ``estimatedCost`` or ``estimatedCredits``) and treats enums as open.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class ExecutionError(_Tolerant):
    code: str | None = None
    message: str | None = None


class Execution(_Tolerant):
    """One firing of a query; ``id`` equals the SSE frame's ``executionId``."""

    id: str = Field(validation_alias=AliasChoices("id", "executionId"))
    query_id: str | None = Field(default=None, validation_alias=AliasChoices("queryId", "query_id"))
    type: str | None = None
    status: str | None = None
    error: ExecutionError | None = None
    created_at: str | None = Field(
        default=None, validation_alias=AliasChoices("createdAt", "created_at")
    )


class QueryStatus(_Tolerant):
    """``GET /queries/{id}``: status, latest evaluation and recent executions."""

    query_id: str | None = Field(default=None, validation_alias=AliasChoices("queryId", "id"))
    status: str | None = None
    title: str | None = None
    description: str | None = None
    query: dict[str, Any] | None = None
    """The query's definition (conditions, actions), where Auto includes it."""
    credits: float | None = None
    latest_evaluation: dict[str, Any] | None = Field(
        default=None, validation_alias="latestEvaluation"
    )
    executions: list[Execution] = Field(default_factory=list)


class Pagination(_Tolerant):
    total: int | None = None
    limit: int | None = None
    offset: int | None = None
    has_more: bool = Field(default=False, validation_alias=AliasChoices("hasMore", "has_more"))


class ExecutionPage(_Tolerant):
    """``GET /executions``."""

    data: list[Execution] = Field(default_factory=list)
    pagination: Pagination = Field(default_factory=Pagination)


class SessionRef(_Tolerant):
    session_id: str | None = Field(default=None, validation_alias=AliasChoices("sessionId", "id"))
    status: str | None = None
    executed_at: str | None = Field(default=None, validation_alias="executedAt")


class SessionList(_Tolerant):
    query_id: str | None = Field(default=None, validation_alias="queryId")
    sessions: list[SessionRef] = Field(default_factory=list)


class SessionMessage(_Tolerant):
    query: str | None = None
    response: str | None = None
    status: str | None = None
    analysis_type: str | None = Field(default=None, validation_alias="analysisType")
    timestamp: str | None = None
    trades: list[Any] | None = None


class Session(_Tolerant):
    """An LLM action's output; every field may be null."""

    session_id: str | None = Field(default=None, validation_alias="sessionId")
    query_id: str | None = Field(default=None, validation_alias="queryId")
    title: str | None = None
    analysis_type: str | None = Field(default=None, validation_alias="analysisType")
    created_at: str | None = Field(default=None, validation_alias="createdAt")
    messages: list[SessionMessage] | None = None


class Validation(_Tolerant):
    valid: bool = False
    errors: list[Any] = Field(default_factory=list)
    warnings: list[Any] = Field(default_factory=list)
    estimated_cost: float | None = Field(
        default=None, validation_alias=AliasChoices("estimatedCost", "estimatedCredits")
    )


class Created(_Tolerant):
    """``POST /queries``: docs say ``queryId``, production sends ``id``."""

    query_id: str = Field(validation_alias=AliasChoices("queryId", "id"))
    status: str | None = None
    cost: float | None = None


class Cancelled(_Tolerant):
    query_id: str | None = Field(default=None, validation_alias=AliasChoices("id", "queryId"))
    status: str = "cancelled"
    cancelled_at: str | None = Field(default=None, validation_alias="cancelledAt")
    already_terminal: bool = False


class QuerySummary(_Tolerant):
    """One query of ``GET /queries``."""

    query_id: str | None = Field(default=None, validation_alias=AliasChoices("id", "queryId"))
    title: str | None = None
    description: str | None = None
    status: str | None = None
    created_at: str | None = Field(
        default=None, validation_alias=AliasChoices("createdAt", "created_at")
    )


class QueryPage(_Tolerant):
    """``GET /queries`` (``queries`` or ``data``, as the SDK accepts)."""

    queries: list[QuerySummary] | None = None
    data: list[QuerySummary] | None = None
    total: int | None = None
    limit: int | None = None
    offset: int | None = None

    @property
    def items(self) -> list[QuerySummary]:
        return self.queries if self.queries is not None else (self.data or [])


class Deleted(_Tolerant):
    query_id: str | None = Field(default=None, validation_alias=AliasChoices("id", "queryId"))
    deleted_at: str | None = Field(default=None, validation_alias="deletedAt")
