"""Normalizers: every documented webhook body and SSE frame becomes one canonical Event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autorunner.errors import InvalidEvent
from autorunner.events import normalize_sse, normalize_webhook, parse_json_object
from tests.helpers import canonical

PRODUCTION_FRAME = (
    '{"status":"triggered","title":"Auto Plan Alert","body":"BTC price is greater than $50,000.",'
    '"message":"BTC price is greater than $50,000.","queryId":"359cd110-9cb6-4be6-ac16-99401d13d998",'
    '"queryTitle":"SSE capture: BTC price probe","autoDetails":"Debug capture, always-true threshold.",'
    '"executionId":"354df2b8-913d-4c26-afce-9a80bb0955d0","triggerTime":"2026-05-13T06:56:57.792Z",'
    '"queryIdShort":"359cd110","conditionsMet":1,"queryDisplayTitle":"SSE capture: BTC price probe [359cd110]",'
    '"timestamp":1778655417792}'
)

NOTIFICATION = {
    "id": 12345,
    "type": "athena_query_notify_only",
    "category": "alerts",
    "title": "Query triggered: BTC > 100000",
    "body": "BTC price crossed above 100000",
    "data": {"queryId": "a12d20ff-0000"},
    "priority": "high",
    "createdAt": "2026-04-01T12:00:00.000Z",
}


def test_canonical_body_keeps_ids_symbol_and_time() -> None:
    event = normalize_webhook(
        canonical("evt_01J", execution_id="ex-1"), delivery_id=None, fallback_id="fb"
    )
    assert event.shape == "canonical"
    # The execution id is the event's identity: the same whichever channel carries it.
    assert (event.event_id, event.execution_id, event.query_id) == ("ex-1", "ex-1", "q_123")
    assert (event.event_type, event.symbol, event.occurred_at) == (
        "query.triggered",
        "BTC",
        "2026-04-01T12:00:00.000Z",
    )
    assert event.channel == "webhook"


def test_the_body_id_wins_over_the_delivery_header_id_which_is_kept() -> None:
    event = normalize_webhook(canonical("evt_body"), delivery_id="evt_header", fallback_id="fb")
    assert (event.event_id, event.delivery_id) == ("evt_body", "evt_header")
    same = normalize_webhook(canonical("evt_body"), delivery_id="evt_body", fallback_id="fb")
    assert (same.event_id, same.delivery_id) == ("evt_body", None)


def test_the_delivery_id_is_the_event_id_when_the_body_names_none() -> None:
    body = {"eventType": "query.triggered", "queryId": "q"}
    event = normalize_webhook(body, delivery_id="evt_header", fallback_id="fb")
    assert (event.event_id, event.delivery_id) == ("evt_header", None)


def test_execution_id_is_found_in_trigger_context() -> None:
    body = canonical("e1")
    body["trigger"]["executionId"] = "ex-in-trigger"
    assert (
        normalize_webhook(body, delivery_id=None, fallback_id="fb").execution_id == "ex-in-trigger"
    )


def test_notification_body_uses_its_numeric_id_and_data_query() -> None:
    event = normalize_webhook(NOTIFICATION, delivery_id=None, fallback_id="fb")
    assert event.shape == "notification"
    assert (event.event_id, event.query_id, event.priority) == ("12345", "a12d20ff-0000", "high")
    assert event.title == "Query triggered: BTC > 100000"


def test_body_without_any_id_gets_the_fallback_id() -> None:
    body = {"eventType": "query.triggered", "queryId": "q"}
    assert (
        normalize_webhook(body, delivery_id=None, fallback_id="derived-x").event_id == "derived-x"
    )


def test_the_real_production_sse_frame_normalizes() -> None:
    event = normalize_sse("notification", "2dda077f-acdf-4024-996c-2fff40c5a642", PRODUCTION_FRAME)
    assert event is not None
    assert event.shape == "sse-notification"
    assert event.channel == "sse"
    assert event.event_id == "354df2b8-913d-4c26-afce-9a80bb0955d0"
    assert event.delivery_id == "2dda077f-acdf-4024-996c-2fff40c5a642"
    assert event.execution_id == "354df2b8-913d-4c26-afce-9a80bb0955d0"
    assert event.title == "SSE capture: BTC price probe"  # the query's title, not the alert's
    assert event.query_id == "359cd110-9cb6-4be6-ac16-99401d13d998"
    assert (event.status, event.occurred_at) == ("triggered", "2026-05-13T06:56:57.792Z")


def test_sse_version_a_frame_carries_the_canonical_event() -> None:
    event = normalize_sse("query.triggered", "evt_7", json.dumps(canonical("evt_7")))
    assert event is not None
    assert (event.shape, event.event_id) == ("canonical", "evt_7")


def test_sse_version_b_frame_with_numeric_id_normalizes() -> None:
    event = normalize_sse("notification:new", "12345", json.dumps(NOTIFICATION))
    assert event is not None
    assert (event.shape, event.event_id) == ("notification", "12345")


@pytest.mark.parametrize("name", ["notification:count", "ready", "end", "error"])
def test_sse_frames_without_a_trigger_are_ignored(name: str) -> None:
    assert normalize_sse(name, None, '{"code":"QUERY_STREAM_CLOSED"}') is None


def test_sse_frame_without_id_falls_back_to_execution_id() -> None:
    event = normalize_sse("notification", None, PRODUCTION_FRAME)
    assert event is not None
    assert event.event_id == "354df2b8-913d-4c26-afce-9a80bb0955d0"


def test_epoch_millisecond_times_become_iso() -> None:
    frame = json.dumps({"status": "update", "queryId": "q", "timestamp": 1778655417792})
    event = normalize_sse("notification", "u1", frame)
    assert event is not None
    assert event.occurred_at == "2026-05-13T06:56:57.792000Z"


@pytest.mark.parametrize("body", [{}, {"hello": "world"}, {"id": 5}, {"status": "triggered"}])
def test_unknown_shapes_are_invalid(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        normalize_webhook(body, delivery_id="d", fallback_id="fb")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_bodies_that_are_not_json_objects_are_invalid(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_json_object(raw)


def test_event_round_trips_through_its_codec() -> None:
    event = normalize_webhook(canonical("e1", execution_id="x"), delivery_id=None, fallback_id="fb")
    assert type(event).from_dict(event.to_dict()) == event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "eventType": json_values,
        "eventId": json_values,
        "id": json_values,
        "type": json_values,
        "data": json_values,
        "title": json_values,
        "status": json_values,
        "queryId": json_values,
        "executionId": json_values,
        "trigger": json_values,
        "timestamp": json_values,
        "createdAt": json_values,
        "triggerTime": json_values,
        "body": json_values,
    },
)


@given(payload=shaped, delivery_id=st.none() | st.text(max_size=300))
def test_no_webhook_body_crashes_the_normalizer(
    payload: dict[str, Any], delivery_id: str | None
) -> None:
    try:
        event = normalize_webhook(payload, delivery_id=delivery_id, fallback_id="fb")
    except InvalidEvent:
        return
    assert event.event_id
    assert event.to_dict()["payload"] == payload


@given(
    name=st.text(max_size=20),
    frame_id=st.none() | st.text(max_size=50),
    data=st.text() | shaped.map(json.dumps),
)
def test_no_sse_frame_crashes_the_normalizer(name: str, frame_id: str | None, data: str) -> None:
    try:
        event = normalize_sse(name, frame_id, data)
    except InvalidEvent:
        return
    assert event is None or event.event_id
