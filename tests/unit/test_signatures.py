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
    headers: dict[str, str],
    body: bytes = BODY,
    *,
    secrets: str = SECRET,
    standard: str | None = None,
    **kw: object,
) -> signatures.Verified:
    return verify(headers, body, secrets=Secrets.parse(secrets, standard), now=NOW, **kw)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("ts", ["abc", "nan", "inf", "", "1e309"])
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


KEY = b"0123456789abcdef0123456789abcdef"
WHSEC = "whsec_" + base64.b64encode(KEY).decode()


def standard_headers(
    secret_bytes: bytes = KEY, *, msg_id: str = "msg_1", ts: str = str(NOW), body: bytes = BODY
) -> dict[str, str]:
    mac = hmac.new(secret_bytes, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1,bogus v1," + base64.b64encode(mac).decode(),
    }


def test_standard_webhooks_signature_with_its_own_whsec_secret_verifies() -> None:
    verified = check(standard_headers(), secrets="", standard=WHSEC)
    assert (verified.scheme, verified.delivery_id) == ("standard-webhooks", "msg_1")


def test_standard_webhooks_secret_without_padding_verifies_like_the_official_library() -> None:
    key = b"k" * 25  # base64 of 25 bytes ends in padding
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert check(standard_headers(key), standard=unpadded).scheme == "standard-webhooks"


def test_standard_webhooks_deliveries_are_refused_without_a_standard_secret() -> None:
    # AUTO_SECRET is Elfa's only: the same bytes do not sign the other scheme.
    key_text = "shared-secret"
    headers = standard_headers(key_text.encode())
    assert reason(headers, secrets=key_text) == "no_secret"


@pytest.mark.parametrize("secret", ["plain-secret", "whsec_not base64!", "whsec_"])
def test_a_standard_secret_that_is_not_whsec_base64_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        Secrets.parse(None, secret)


def test_standard_webhooks_tampering_and_staleness_are_refused() -> None:
    assert reason(standard_headers(), BODY + b" ", standard=WHSEC) == "bad_signature"
    assert reason(standard_headers(ts=str(NOW - 301)), standard=WHSEC) == "stale_timestamp"
    headers = standard_headers()
    del headers["webhook-id"]
    assert reason(headers, standard=WHSEC) == "missing_timestamp"


@pytest.mark.parametrize(
    "ts",
    [
        f"{NOW}.5",
        f"+{NOW}",
        f"-{NOW}",
        f"{NOW}.0",
        "1.78e9",
        f"0x{NOW:x}",
        f"{NOW}_0",
        "".join(chr(0x0660 + int(d)) for d in str(NOW)),  # Arabic-Indic digits
        f"{NOW}\t",
        f"{NOW} ",
    ],
)
def test_a_timestamp_is_plain_ascii_digits_or_refused(ts: str) -> None:
    assert reason(elfa_headers(ts=ts)) == "bad_timestamp"
    assert reason(standard_headers(ts=ts), standard=WHSEC) == "bad_timestamp"


def test_a_moved_separator_does_not_re_sign_a_delivery_as_another_event() -> None:
    # Signed bytes "NOW.5.evt.{body}": event "5.evt" at NOW, or event "evt" at "NOW.5", or
    # event "5" with the body "evt.{body}". Neither a fraction nor an id with a '.' is taken,
    # so those bytes can only ever be read one way.
    captured = elfa_headers(event_id="5.evt")
    assert reason(captured) == "ambiguous_signature"
    moved = {**captured, "x-auto-event-id": "evt", "x-auto-signature-timestamp": f"{NOW}.5"}
    assert reason(moved) == "bad_timestamp"
    assert reason(standard_headers(msg_id="msg.1"), standard=WHSEC) == "ambiguous_signature"


def test_a_delivery_signed_by_both_schemes_is_refused() -> None:
    headers = {**elfa_headers(), **standard_headers()}
    assert reason(headers, standard=WHSEC) == "ambiguous_signature"


def test_disagreeing_elfa_timestamp_headers_are_refused() -> None:
    headers = {**elfa_headers(), "x-auto-timestamp": str(NOW + 1)}
    assert reason(headers) == "ambiguous_signature"
    same = {**elfa_headers(), "x-auto-timestamp": str(NOW)}
    assert check(same).scheme == "elfa-v1"


def test_a_signed_header_sent_twice_is_refused_and_others_may_repeat() -> None:
    raw = [(b"X-Auto-Event-Id", b"a"), (b"x-auto-event-id", b"b")]
    with pytest.raises(SignatureError) as info:
        signatures.header_map(raw)
    assert info.value.reason == "duplicate_header"
    assert signatures.header_map([(b"Accept", b"a"), (b"accept", b"b")]) == {"accept": "b"}


def test_secrets_repr_never_shows_a_secret() -> None:
    shown = repr(Secrets.parse(SECRET, WHSEC))
    assert SECRET not in shown
    assert WHSEC[6:] not in shown


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


@pytest.mark.parametrize("legacy", [False, True])
def test_one_key_cannot_serve_both_schemes(legacy: bool) -> None:
    key = hashlib.sha256(SECRET.encode()).digest() if legacy else SECRET.encode()
    with pytest.raises(ValueError, match="both"):
        Secrets.parse(SECRET, "whsec_" + base64.b64encode(key).decode())
