"""A captured delivery verifies only as itself: every reinterpretation of its signed bytes that
we can think of — the other scheme, moved separators, other spellings of its timestamp, its
headers swapped — is refused, or reads back as the same delivery id, instant and body.

Standard Webhooks deliveries are signed by the official ``standardwebhooks`` library, Elfa ones
by the contract's formula written out here, so neither side of a check is only ours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from autorunner.errors import SignatureError
from autorunner.signatures import Secrets, verify

NOW = 1_780_000_000
ELFA_SECRET = "elfa-signing-secret"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-24b").decode()
SECRETS = Secrets.parse(ELFA_SECRET, STANDARD_SECRET)

Captured = tuple[dict[str, str], bytes]


def elfa(event_id: str, body: bytes, ts: str, *, legacy: bool = False) -> Captured:
    key = hashlib.sha256(ELFA_SECRET.encode()).digest() if legacy else ELFA_SECRET.encode()
    mac = hmac.new(key, f"{ts}.{event_id}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "x-auto-event-id": event_id,
        "x-auto-signature-timestamp": ts,
        "x-auto-signature": f"v1={mac}",
    }
    return headers, body


def standard(msg_id: str, body: bytes, ts: int) -> Captured:
    signature = Webhook(STANDARD_SECRET).sign(
        msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode()
    )
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
    return headers, body


def meaning(headers: dict[str, str], body: bytes) -> tuple[str | None, float | None, bytes] | None:
    """What the runner would take a delivery for, or ``None`` when it is refused."""
    try:
        verified = verify(headers, body, secrets=SECRETS, now=NOW)
    except SignatureError:
        return None
    return verified.delivery_id, verified.timestamp, body


def hex_to_b64(text: str) -> str:
    try:
        return base64.b64encode(binascii.unhexlify(text)).decode()
    except (binascii.Error, ValueError):
        return text


def b64_to_hex(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        return text


def timestamp_spellings(ts: str) -> list[str]:
    """The same instant (or the same bytes) written otherwise."""
    return [
        f"{ts}.0",
        f"+{ts}",
        f"0{ts}",
        f" {ts}",
        f"{int(ts) * 1000}",
        f"{int(ts) / 1e9:.9f}e9",
    ]


def reinterpretations(headers: dict[str, str], body: bytes) -> Iterator[Captured]:
    """Every way we can think of to present a captured delivery's signature as another one."""
    if "x-auto-signature" in headers:
        yield from elfa_reinterpretations(headers, body)
    else:
        yield from standard_reinterpretations(headers, body)


def moved_separators(
    signed: bytes, original: tuple[bytes, bytes, bytes]
) -> Iterator[tuple[bytes, bytes, bytes]]:
    """The signed bytes cut into three at any other pair of dots."""
    dots = [i for i, byte in enumerate(signed) if byte == ord(".")][:40]
    for first in dots:
        for second in (d for d in dots if d > first):
            cut = (signed[:first], signed[first + 1 : second], signed[second + 1 :])
            if cut != original:
                yield cut


def elfa_reinterpretations(headers: dict[str, str], body: bytes) -> Iterator[Captured]:
    ts, eid = headers["x-auto-signature-timestamp"], headers["x-auto-event-id"]
    mac = headers["x-auto-signature"].removeprefix("v1=")
    # The other scheme over the same bytes: id and timestamp in either order, or both at once.
    for msg_id, msg_ts in ((ts, eid), (eid, ts)):
        yield (
            {
                "webhook-id": msg_id,
                "webhook-timestamp": msg_ts,
                "webhook-signature": f"v1,{hex_to_b64(mac)}",
            },
            body,
        )
    yield {**headers, "webhook-signature": f"v1,{hex_to_b64(mac)}"}, body
    signed = f"{ts}.{eid}.".encode() + body
    for new_ts, new_id, new_body in moved_separators(signed, (ts.encode(), eid.encode(), body)):
        yield (
            {
                "x-auto-event-id": new_id.decode("latin-1"),
                "x-auto-signature-timestamp": new_ts.decode("latin-1"),
                "x-auto-signature": f"v1={mac}",
            },
            new_body,
        )
    for spelling in timestamp_spellings(ts):
        yield {**headers, "x-auto-signature-timestamp": spelling}, body
    # The older header name for the timestamp, alone: the same delivery.
    older = {k: v for k, v in headers.items() if k != "x-auto-signature-timestamp"}
    yield {**older, "x-auto-timestamp": ts}, body


def standard_reinterpretations(headers: dict[str, str], body: bytes) -> Iterator[Captured]:
    msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
    mac = headers["webhook-signature"].split()[0].removeprefix("v1,")
    for elfa_ts, elfa_id in ((msg_id, ts), (ts, msg_id)):
        yield (
            {
                "x-auto-event-id": elfa_id,
                "x-auto-signature-timestamp": elfa_ts,
                "x-auto-signature": f"v1={b64_to_hex(mac)}",
            },
            body,
        )
    signed = f"{msg_id}.{ts}.".encode() + body
    for new_id, new_ts, new_body in moved_separators(signed, (msg_id.encode(), ts.encode(), body)):
        yield (
            {
                "webhook-id": new_id.decode("latin-1"),
                "webhook-timestamp": new_ts.decode("latin-1"),
                "webhook-signature": headers["webhook-signature"],
            },
            new_body,
        )
    for spelling in timestamp_spellings(ts):
        yield {**headers, "webhook-timestamp": spelling}, body


IDS = st.text(alphabet="abcdef0123456789-_:", min_size=1, max_size=24)
BODIES = st.sampled_from(
    [
        b'{"eventId":"evt_1","eventType":"query.triggered"}',
        b'{"id":1.5,"type":"t","data":{"queryId":"q.1"}}',
        b'{"a":"x.{\\"b\\":1}"}',
        b"{}",
    ]
)


def assert_only_itself(original: Captured) -> None:
    first = meaning(*original)
    assert first is not None, "the captured delivery itself must verify"
    for headers, body in reinterpretations(*original):
        seen = meaning(headers, body)
        assert seen is None or seen == first, (headers, body)


@given(event_id=IDS, body=BODIES, drift=st.integers(-200, 200), legacy=st.booleans())
def test_a_captured_elfa_delivery_verifies_only_as_itself(
    event_id: str, body: bytes, drift: int, legacy: bool
) -> None:
    assert_only_itself(elfa(event_id, body, str(NOW + drift), legacy=legacy))


@given(msg_id=IDS, body=BODIES, drift=st.integers(-200, 200))
def test_a_captured_standard_webhooks_delivery_verifies_only_as_itself(
    msg_id: str, body: bytes, drift: int
) -> None:
    assert_only_itself(standard(msg_id, body, NOW + drift))


def test_a_digit_event_id_cannot_be_swapped_with_its_timestamp_across_schemes() -> None:
    # The reported capture: an Elfa v1 delivery whose event id is itself a plausible timestamp.
    assert_only_itself(elfa(str(NOW + 1), b'{"eventId":"e"}', str(NOW)))
    assert_only_itself(standard(str(NOW + 1), b'{"eventId":"e"}', NOW))


def test_millisecond_capture_verifies_as_the_same_instant_only() -> None:
    assert_only_itself(elfa("evt_ms", b'{"eventId":"evt_ms"}', str(NOW * 1000)))
