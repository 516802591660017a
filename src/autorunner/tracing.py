"""Traces, through the OpenTelemetry SDK and its OTLP/HTTP exporter, or nothing at all.

Tracing is on when the process environment names an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and
``OTEL_SDK_DISABLED`` is not ``true``; the SDK then reads every other standard ``OTEL_*``
variable itself (headers, sampler, batch delays, service name, resource attributes). Off, the
runner holds ``OFF``, whose spans are one shared object with empty methods, and the SDK is never
imported: tracing costs nothing when nobody asked for it.

One event is one trace. The span that admits it is the parent of everything after: its W3C
``traceparent`` is kept with the event in the store (``Event.traceparent``), so every attempt,
on any worker, after any restart, continues that trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import httpx2
    from opentelemetry.sdk.trace import TracerProvider

Value = str | bool | int | float
Kind = Literal["internal", "server", "client", "producer", "consumer"]
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class Span(Protocol):
    """What the runner does with a span."""

    def set(self, attributes: Mapping[str, Value | None]) -> None:
        """Add attributes (``None`` values are left out)."""

    def fail(self, description: str) -> None:
        """Mark the span's operation as failed."""


class Tracing(Protocol):
    """Makes spans; ``OFF`` or ``OtelTracing``."""

    enabled: bool

    def span(
        self,
        name: str,
        attributes: Mapping[str, Value | None] | None = None,
        *,
        kind: Kind = "internal",
        parent: str | None = None,
        start: float | None = None,
    ) -> contextlib.AbstractContextManager[Span]:
        """A span, current within the block: the child of the current one, or of the
        ``parent`` traceparent when given; ``start`` (Unix seconds) backdates it."""

    def record(
        self,
        name: str,
        attributes: Mapping[str, Value | None] | None = None,
        *,
        parent: str | None,
        start: float,
        end: float,
    ) -> None:
        """A span of something that already happened (a wait), between Unix times."""

    def traceparent(self) -> str | None:
        """The current span's W3C ``traceparent`` (``None`` outside a span or when off)."""

    def shutdown(self) -> None:
        """Send what is buffered and stop."""


class _NoSpan:
    def set(self, attributes: Mapping[str, Value | None]) -> None:
        pass

    def fail(self, description: str) -> None:
        pass

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Off:
    enabled = False
    _span = _NoSpan()

    def span(
        self,
        name: str,
        attributes: Mapping[str, Value | None] | None = None,
        *,
        kind: Kind = "internal",
        parent: str | None = None,
        start: float | None = None,
    ) -> _NoSpan:
        return self._span

    def record(
        self,
        name: str,
        attributes: Mapping[str, Value | None] | None = None,
        *,
        parent: str | None,
        start: float,
        end: float,
    ) -> None:
        pass

    def traceparent(self) -> str | None:
        return None

    def shutdown(self) -> None:
        pass


OFF: Tracing = _Off()


def requested(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().replace(" ", "").split(",")
    if "otlp" not in exporters:  # ``none``, or an exporter this runner does not ship
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def from_environment(*, instance: str, role: str) -> Tracing:
    """``OtelTracing`` exporting over OTLP/HTTP when the process environment asks for it, else
    ``OFF``. The SDK reads its ``OTEL_*`` variables from ``os.environ`` itself, so this is the
    one place besides the settings where the runner looks at the environment."""
    if not requested(os.environ):
        return OFF
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    tracing = OtelTracing(instance=instance, role=role)
    tracing.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return tracing


class _OtelSpan:
    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def set(self, attributes: Mapping[str, Value | None]) -> None:
        self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def fail(self, description: str) -> None:
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        self._span.set_status(Status(StatusCode.ERROR, description))


class OtelTracing:
    """Spans through an SDK tracer provider of the runtime's own (never the global one, so a
    process may hold several runtimes); exporters are added to ``provider``."""

    enabled = True

    def __init__(self, *, instance: str, role: str) -> None:
        from opentelemetry import trace  # noqa: PLC0415
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        from autorunner import __version__  # noqa: PLC0415

        resource = Resource.create(
            {
                "service.version": __version__,
                "service.instance.id": instance,
                "autorunner.role": role,
            }
        )
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "autorunner"}))
        self.provider: TracerProvider = TracerProvider(resource=resource)
        self._tracer = self.provider.get_tracer("autorunner", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
            "producer": trace.SpanKind.PRODUCER,
            "consumer": trace.SpanKind.CONSUMER,
        }

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, Value | None] | None = None,
        *,
        kind: Kind = "internal",
        parent: str | None = None,
        start: float | None = None,
    ) -> Iterator[Span]:
        context = None if parent is None else self._propagator.extract({"traceparent": parent})
        with self._tracer.start_as_current_span(
            name,
            context=context,
            kind=self._kinds[kind],
            attributes={k: v for k, v in (attributes or {}).items() if v is not None},
            start_time=None if start is None else int(start * 1e9),
        ) as span:
            yield _OtelSpan(span)

    def record(
        self,
        name: str,
        attributes: Mapping[str, Value | None] | None = None,
        *,
        parent: str | None,
        start: float,
        end: float,
    ) -> None:
        context = None if parent is None else self._propagator.extract({"traceparent": parent})
        span = self._tracer.start_span(
            name,
            context=context,
            attributes={k: v for k, v in (attributes or {}).items() if v is not None},
            start_time=int(start * 1e9),
        )
        span.end(end_time=int(max(start, end) * 1e9))

    def traceparent(self) -> str | None:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent")

    def inject(self, headers: Any) -> None:
        """Write the current span's ``traceparent`` into outgoing ``headers``."""
        self._propagator.inject(headers)

    def shutdown(self) -> None:
        self.provider.shutdown()


def trace_requests(tracing: OtelTracing, client: httpx2.AsyncClient) -> None:
    """Make each request of ``client`` a client span that sends its ``traceparent`` along.

    The client is built as usual first, so its proxies (``HTTPS_PROXY``, ``NO_PROXY``…) stay
    as the environment says; then its transport and every proxy transport are wrapped (the
    client's ``_transport`` and ``_mounts``: httpx2 offers no public way to wrap the transports
    it chose; pinned below 3). The span names the method and the server, never the path or
    query: a Telegram bot token is part of its path."""
    import httpx2  # noqa: PLC0415

    class TracedTransport(httpx2.AsyncBaseTransport):
        def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            url = request.url
            with tracing.span(
                request.method,
                {
                    "http.request.method": request.method,
                    "server.address": url.host,
                    "server.port": url.port or (443 if url.scheme == "https" else 80),
                },
                kind="client",
            ) as span:
                tracing.inject(request.headers)
                response = await self.inner.handle_async_request(request)
                span.set({"http.response.status_code": response.status_code})
                if response.status_code >= 500:
                    span.fail(f"HTTP {response.status_code}")
                return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    client._transport = TracedTransport(client._transport)
    client._mounts = {
        pattern: None if inner is None else TracedTransport(inner)
        for pattern, inner in client._mounts.items()
    }
