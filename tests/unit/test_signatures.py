"""Webhook verification: every scheme, key derivation, rotation, clock drift and tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autorunner import signatures
from autorunner.errors import SignatureError
from autorunner.signatures import Secrets, verify

NOW = 1_780_000_000
SECRET = "whk-secret"
BODY = b'{"eventId":"evt_1","eventType":"query.triggered"}'


def elfa_headers(
    *,
    secret: str = SECRET,
    ts: str = str(NOW),
    event_id: str = "evt_1",
    body: bytes = BODY,
    legacy: bool = False,
) -> dict[str, str]:
    # The contract's formula, computed here independently of the code under test.
    key = hashlib.sha256(secret.encode()).digest() if legacy else secret.encode()
    mac = hmac.new(key, ts.encode() + b"." + event_id.encode() + b"." + body, hashlib.sha256)
    return {
        "x-auto-event-id": event_id,
        "x-auto-signature-timestamp": ts,
        "x-auto-signature": "v1=" + mac.hexdigest(),
    }


def check(
    headers: dict[str, str], body: bytes = BODY, *, secrets: str = SECRET, **kw: object
) -> signatures.Verified:
    return verify(headers, body, secrets=Secrets.parse(secrets), now=NOW, **kw)  # type: ignore[arg-type]


def reason(headers: dict[str, str], body: bytes = BODY, **kw: object) -> str:
    with pytest.raises(SignatureError) as info:
        check(headers, body, **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_current_elfa_signature_verifies_and_names_the_delivery() -> None:
    verified = check(elfa_headers())
    assert verified.scheme == "elfa-v1"
    assert verified.delivery_id == "evt_1"
    assert verified.timestamp == NOW


def test_older_sha256_keyed_signature_verifies() -> None:
    assert check(elfa_headers(legacy=True)).scheme == "elfa-v1"


def test_any_of_several_rotated_secrets_verifies() -> None:
    assert check(elfa_headers(secret="new"), secrets="old, new").delivery_id == "evt_1"
    assert check(elfa_headers(secret="old"), secrets="old,new").delivery_id == "evt_1"


def test_millisecond_timestamps_are_understood() -> None:
    assert check(elfa_headers(ts=str(NOW * 1000))).timestamp == NOW


def test_tampered_body_is_refused() -> None:
    assert reason(elfa_headers(), BODY.replace(b"evt_1", b"evt_2")) == "bad_signature"


def test_wrong_secret_is_refused() -> None:
    assert reason(elfa_headers(secret="other")) == "bad_signature"


def test_changed_event_id_header_is_refused() -> None:
    headers = elfa_headers()
    headers["x-auto-event-id"] = "evt_other"
    assert reason(headers) == "bad_signature"


@pytest.mark.parametrize("drift", [-301, 301, -10_000])
def test_stale_or_future_timestamp_is_refused(drift: int) -> None:
    assert reason(elfa_headers(ts=str(NOW + drift))) == "stale_timestamp"


def test_tolerance_is_configurable() -> None:
    assert check(elfa_headers(ts=str(NOW - 500)), tolerance=600).scheme == "elfa-v1"
    assert reason(elfa_headers(ts=str(NOW - 50)), tolerance=10) == "stale_timestamp"


@pytest.mark.parametrize("ts", ["abc", "nan", "inf", ""])
def test_unreadable_timestamp_is_refused(ts: str) -> None:
    assert reason(elfa_headers(ts=ts)) in {"bad_timestamp", "missing_timestamp"}


def test_missing_signature_headers_are_refused() -> None:
    assert reason({}) == "missing_signature"
    headers = elfa_headers()
    del headers["x-auto-signature-timestamp"]
    assert reason(headers) == "missing_timestamp"


def test_signature_header_without_v1_value_is_refused() -> None:
    headers = elfa_headers()
    headers["x-auto-signature"] = "v0=abc"
    assert reason(headers) == "bad_signature"


def test_no_configured_secret_refuses_signed_deliveries() -> None:
    assert reason(elfa_headers(), secrets="") == "no_secret"


def test_unsigned_delivery_passes_only_when_allowed() -> None:
    headers = {"x-auto-event-id": "0b4f", "x-auto-timestamp": str(NOW * 1000)}
    assert reason(headers) == "missing_signature"
    verified = check(headers, allow_unsigned=True)
    assert (verified.scheme, verified.delivery_id, verified.timestamp) == ("unsigned", "0b4f", NOW)


def test_missing_event_id_header_verifies_over_an_empty_id() -> None:
    headers = elfa_headers(event_id="")
    del headers["x-auto-event-id"]
    assert check(headers).delivery_id is None


def standard_headers(
    secret_bytes: bytes, *, msg_id: str = "msg_1", ts: str = str(NOW), body: bytes = BODY
) -> dict[str, str]:
    mac = hmac.new(secret_bytes, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1,bogus v1," + base64.b64encode(mac).decode(),
    }


def test_standard_webhooks_signature_with_whsec_secret_verifies() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    verified = check(standard_headers(key), secrets=secret)
    assert (verified.scheme, verified.delivery_id) == ("standard-webhooks", "msg_1")


def test_standard_webhooks_tampering_and_staleness_are_refused() -> None:
    key = b"plain-secret"
    assert reason(standard_headers(key), BODY + b" ", secrets="plain-secret") == "bad_signature"
    assert (
        reason(standard_headers(key, ts=str(NOW - 301)), secrets="plain-secret")
        == "stale_timestamp"
    )
    headers = standard_headers(key)
    del headers["webhook-id"]
    assert reason(headers, secrets="plain-secret") == "missing_timestamp"


def test_secrets_repr_never_shows_a_secret() -> None:
    assert SECRET not in repr(Secrets.parse(SECRET))


def test_signers_match_the_contract_formula() -> None:
    ours = signatures.sign_elfa(SECRET, timestamp=str(NOW), event_id="evt_1", body=BODY)
    assert ours == elfa_headers()["x-auto-signature"]
    legacy = signatures.sign_elfa(
        SECRET, timestamp=str(NOW), event_id="evt_1", body=BODY, legacy=True
    )
    assert legacy == elfa_headers(legacy=True)["x-auto-signature"]


@given(
    secret=st.text(min_size=1).filter(lambda s: "," not in s and s.strip() == s),
    body=st.binary(),
    event_id=st.text(alphabet="abcdef0123456789-", max_size=40),
)
def test_any_signed_body_verifies_and_any_flipped_byte_fails(
    secret: str, body: bytes, event_id: str
) -> None:
    headers = elfa_headers(secret=secret, event_id=event_id, body=body)
    assert check(headers, body, secrets=secret).scheme == "elfa-v1"
    tampered = body + b"x"
    assert reason(headers, tampered, secrets=secret) == "bad_signature"
