"""When tracing is on, and what it costs when it is off."""

from __future__ import annotations

import pytest

from autorunner import tracing


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "runner"}, False),
    ],
)
def test_traces_are_on_only_when_an_otlp_endpoint_is_named_and_nothing_turns_them_off(
    environ: dict[str, str], on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tracing.requested(environ) is on
    for name in (*tracing.ENDPOINT_VARIABLES, "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    made = tracing.from_environment(instance="i", role="serve")
    assert made.enabled is on
    made.shutdown()


def test_off_hands_out_one_shared_span_and_no_context() -> None:
    off = tracing.OFF
    with off.span("a", {"k": 1}) as first, off.span("b", parent="00-x-y-01") as second:
        first.set({"k": 2})
        second.fail("no")
        assert first is second
        assert off.traceparent() is None


def test_a_span_under_a_kept_traceparent_continues_that_trace() -> None:
    on = tracing.OtelTracing(instance="i", role="worker")
    with on.span("admit"):
        kept = on.traceparent()
    assert kept is not None
    with on.span("attempt", parent=kept):
        continued = on.traceparent()
    assert continued is not None
    assert continued.split("-")[1] == kept.split("-")[1]
    assert continued.split("-")[2] != kept.split("-")[2]
    on.shutdown()
