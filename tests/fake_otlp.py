"""An OTLP/HTTP trace receiver for tests: ``POST /v1/traces`` with the protobuf body the
OpenTelemetry exporter sends (gzip or not), decoded with the protocol's own generated classes
into plain ``Received`` spans."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.fake_api import reply

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Received:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    error: bool
    resource: dict[str, Any]
    start_ns: int
    end_ns: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


def _attributes(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class OtlpReceiver:
    """The ASGI app; every span received is appended to ``spans``."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope["headers"])
        if (
            scope["path"] != "/v1/traces"
            or headers.get(b"content-type") != b"application/x-protobuf"
        ):
            await reply(send, 404, b"{}")
            return
        if headers.get(b"content-encoding") == b"gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.requests += 1
        for resource_spans in request.resource_spans:
            resource = _attributes(list(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(
                    Received(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=KINDS[span.kind],
                        attributes=_attributes(list(span.attributes)),
                        error=span.status.code == 2,
                        resource=resource,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                    )
                    for span in scope_spans.spans
                )
        await reply(send, 200, ExportTraceServiceResponse().SerializeToString())

    def named(self, name: str) -> list[Received]:
        return [span for span in self.spans if span.name == name]

    def of_event(self, event_id: str) -> list[Received]:
        """Every span in the traces that name ``event_id`` anywhere."""
        traces = {
            s.trace_id for s in self.spans if s.attributes.get("autorunner.event_id") == event_id
        }
        return [span for span in self.spans if span.trace_id in traces]
