"""The event-stream decoder against the WHATWG rules and every Auto frame version."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autorunner.events import normalize_sse
from autorunner.sse import ServerSentEvent, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_multi_line_data_joins_with_newlines_and_defaults_to_message() -> None:
    [event] = decode(b"data: first\ndata: second\n\n")
    assert (event.event, event.data, event.id) == ("message", "first\nsecond", None)


def test_cr_lf_and_crlf_all_end_lines() -> None:
    events = decode(b"event: a\rdata: 1\r\rdata: 2\r\n\r\ndata: 3\n\n")
    assert [(e.event, e.data) for e in events] == [("a", "1"), ("message", "2"), ("message", "3")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    events = decode(b"data: x\r", b"\ndata: y\r", b"\n\r", b"\n")
    assert [e.data for e in events] == ["x\ny"]


def test_comments_are_counted_and_ignored() -> None:
    decoder = SSEDecoder()
    events = list(decoder.feed(b": keep-alive\n\n: keep-alive\ndata: x\n\n"))
    assert [e.data for e in events] == ["x"]
    assert decoder.comments == 2


def test_field_without_colon_has_an_empty_value() -> None:
    [event] = decode(b"data\ndata\n\n")
    assert event.data == "\n"


def test_only_one_space_after_the_colon_is_dropped() -> None:
    [event] = decode(b"data:  two spaces\n\n")
    assert event.data == " two spaces"


def test_id_persists_and_an_id_with_nul_is_ignored() -> None:
    events = decode(b"id: 7\ndata: a\n\ndata: b\n\nid: bad\x00id\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", "7"]


def test_retry_is_taken_only_when_all_digits() -> None:
    events = decode(b"retry: 3000\ndata: a\n\nretry: 10s\ndata: b\n\n")
    assert [e.retry for e in events] == [3000, 3000]


def test_leading_bom_is_dropped_once() -> None:
    [event] = decode(b"\xef\xbb\xbfdata: x\n\n")
    assert event.data == "x"


def test_event_without_data_is_not_dispatched_and_unknown_fields_are_ignored() -> None:
    assert decode(b"event: ready\n\nfoo: bar\n\n") == []


def test_invalid_utf8_becomes_replacement_characters_not_an_error() -> None:
    [event] = decode(b"data: \xff\xfe\n\n")
    assert event.data == "\ufffd\ufffd"


def test_unterminated_last_event_is_not_dispatched() -> None:
    assert decode(b"data: partial\n") == []


def test_the_real_production_frame_decodes_and_normalizes() -> None:
    frame = (
        b"id: 2dda077f-acdf-4024-996c-2fff40c5a642\nevent: notification\n"
        b'data: {"status":"triggered","title":"Auto Plan Alert","queryId":"359cd110",'
        b'"executionId":"354df2b8-913d-4c26-afce-9a80bb0955d0","timestamp":1778655417792}\n\n'
    )
    [raw] = decode(frame)
    event = normalize_sse(raw.event, raw.id, raw.data)
    assert event is not None
    assert event.execution_id == "354df2b8-913d-4c26-afce-9a80bb0955d0"


STREAM = (
    b'\xef\xbb\xbf: hello\r\nretry: 1500\nid: 1\nevent: notification:new\ndata: {"id": 1}\n\n'
    b"event: query.triggered\r\ndata: line one\r\ndata: line two\r\n\r\n"
    b'id\ndata\n\n: keep-alive\n\nevent: end\ndata: {"code":"QUERY_STREAM_CLOSED"}\r\r'
)


@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_chunking_decodes_to_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert decode(*chunks) == decode(STREAM)
    assert len(decode(STREAM)) == 4


@given(data=st.binary(max_size=300))
def test_no_byte_sequence_crashes_the_decoder(data: bytes) -> None:
    for event in decode(data):
        assert isinstance(event.data, str)
