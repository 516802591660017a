"""Webhook verification and signing (pure: bytes and numbers in, a value or ``SignatureError`` out).

Two header sets are accepted (auto-contract §3):

* Elfa ``v1``: ``X-Auto-Event-Id``, ``X-Auto-Signature-Timestamp`` (seconds or milliseconds),
  ``X-Auto-Signature: v1=<hex>`` over ``timestamp + "." + eventId + "." + rawBody``, keyed by the
  secret's bytes (current) or by ``SHA256(secret)`` (older deliveries).
* Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64> …``
  over ``id + "." + timestamp + "." + rawBody``, keyed by a ``whsec_<base64>`` secret of its own.

A captured delivery must not verify as any other delivery, so nothing is left to interpretation:
a secret belongs to one scheme (``AUTO_SECRET`` signs Elfa ``v1`` only; Standard Webhooks has
its own ``whsec_`` secrets and is off without them); the signed text's ``.`` separators cannot
move, because a timestamp is plain ASCII digits (no sign, fraction, exponent or space) and a
delivery id holds no ``.`` (Auto's are UUIDs); a delivery carrying both
schemes' signatures or any signed header twice is refused, and so is one whose two Elfa
timestamp headers disagree.

Several secrets may be configured per scheme (rotation); every one is tried, each comparison in
constant time. Unsigned deliveries pass only when the operator allows them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from autorunner.errors import SignatureError

Scheme = Literal["elfa-v1", "standard-webhooks", "unsigned"]
DEFAULT_TOLERANCE = 300.0
_MILLISECONDS_THRESHOLD = 100_000_000_000  # a Unix time above this is in milliseconds
_TIMESTAMP = re.compile(r"[0-9]{1,16}")
SIGNED_HEADERS = frozenset(
    {
        "x-auto-event-id",
        "x-auto-signature-timestamp",
        "x-auto-timestamp",
        "x-auto-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
"""Headers that take part in a signature: each may be sent once."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Verified:
    """What verification established about a delivery."""

    scheme: Scheme
    delivery_id: str | None
    timestamp: float | None


class Secrets:
    """The configured webhook secrets, each bound to its scheme, with the keys derived from them
    (computed once)."""

    __slots__ = ("elfa_keys", "standard_keys")

    def __init__(self, elfa: tuple[str, ...] = (), standard: tuple[str, ...] = ()) -> None:
        self.elfa_keys: tuple[bytes, ...] = tuple(
            key for s in elfa for key in (s.encode(), hashlib.sha256(s.encode()).digest())
        )
        self.standard_keys: tuple[bytes, ...] = tuple(standard_key(s) for s in standard)
        if set(self.standard_keys) & set(self.elfa_keys):
            raise ValueError("the same key may not sign both Elfa v1 and Standard Webhooks")

    @classmethod
    def parse(cls, elfa: str | None, standard: str | None = None) -> Secrets:
        """Comma-separated secrets per scheme (rotation), blanks ignored; ``ValueError`` for a
        Standard Webhooks secret that is not ``whsec_<base64>`` or a key shared by both schemes."""
        return cls(_split(elfa), _split(standard))

    def __repr__(self) -> str:
        return f"Secrets(<{len(self.elfa_keys) // 2} + {len(self.standard_keys)} masked>)"


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret, ``whsec_`` + base64 (``ValueError`` if not)."""
    encoded = secret.removeprefix("whsec_")
    if encoded == secret:
        raise ValueError("a Standard Webhooks secret starts with whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64")
    return key


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a mapping with lower-case names; a signed header sent twice is a
    ``SignatureError`` (which copy was signed would be a guess)."""
    headers: dict[str, str] = {}
    for name_bytes, value in raw:
        name = name_bytes.decode("latin-1").lower()
        if name in headers and name in SIGNED_HEADERS:
            raise SignatureError("duplicate_header", f"header {name} is sent more than once")
        headers[name] = value.decode("latin-1")
    return headers


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Secrets,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
    allow_unsigned: bool = False,
) -> Verified:
    """Verify a delivery; ``headers`` must have lower-case names.

    Raises ``SignatureError`` with reason ``missing_signature``, ``bad_signature``,
    ``bad_timestamp``, ``stale_timestamp``, ``ambiguous_signature`` or ``no_secret``.
    """
    if "x-auto-signature" in headers and "webhook-signature" in headers:
        raise SignatureError(
            "ambiguous_signature", "both X-Auto-Signature and webhook-signature are present"
        )
    if "x-auto-signature" in headers:
        return _verify_elfa(headers, body, secrets, now, tolerance)
    if "webhook-signature" in headers:
        return _verify_standard(headers, body, secrets, now, tolerance)
    if allow_unsigned:
        ts = headers.get("x-auto-signature-timestamp") or headers.get("x-auto-timestamp")
        return Verified(
            scheme="unsigned",
            delivery_id=headers.get("x-auto-event-id") or headers.get("webhook-id") or None,
            timestamp=parse_timestamp(ts) if ts else None,
        )
    raise SignatureError(
        "missing_signature", "missing X-Auto-Signature or webhook-signature header"
    )


def _verify_elfa(
    headers: Mapping[str, str], body: bytes, secrets: Secrets, now: float, tolerance: float
) -> Verified:
    ts_text = headers.get("x-auto-signature-timestamp") or headers.get("x-auto-timestamp")
    if not ts_text:
        raise SignatureError("missing_timestamp", "missing X-Auto-Signature-Timestamp header")
    if headers.get("x-auto-timestamp", ts_text) != ts_text:
        raise SignatureError(
            "ambiguous_signature", "X-Auto-Signature-Timestamp and X-Auto-Timestamp disagree"
        )
    timestamp = _check_time(ts_text, now, tolerance)
    event_id = _delivery_id(headers.get("x-auto-event-id", ""), "X-Auto-Event-Id")
    signed = ts_text.encode() + b"." + event_id.encode() + b"." + body
    offered = [
        part.strip()[3:].lower()
        for part in headers["x-auto-signature"].split(",")
        if part.strip().startswith("v1=")
    ]
    _match(secrets.elfa_keys, signed, offered, hex_digest=True, setting="AUTO_SECRET")
    return Verified(scheme="elfa-v1", delivery_id=event_id or None, timestamp=timestamp)


def _verify_standard(
    headers: Mapping[str, str], body: bytes, secrets: Secrets, now: float, tolerance: float
) -> Verified:
    msg_id = headers.get("webhook-id", "")
    ts_text = headers.get("webhook-timestamp", "")
    if not msg_id or not ts_text:
        raise SignatureError("missing_timestamp", "missing webhook-id or webhook-timestamp header")
    timestamp = _check_time(ts_text, now, tolerance)
    _delivery_id(msg_id, "webhook-id")
    signed = msg_id.encode() + b"." + ts_text.encode() + b"." + body
    offered = [part[3:] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    _match(
        secrets.standard_keys,
        signed,
        offered,
        hex_digest=False,
        setting="STANDARD_WEBHOOKS_SECRET",
    )
    return Verified(scheme="standard-webhooks", delivery_id=msg_id, timestamp=timestamp)


def _delivery_id(value: str, header: str) -> str:
    if "." in value:
        raise SignatureError(
            "ambiguous_signature", f"{header} may not contain '.', the signature's separator"
        )
    return value


def _match(
    keys: Sequence[bytes], signed: bytes, offered: Sequence[str], *, hex_digest: bool, setting: str
) -> None:
    if not keys:
        raise SignatureError("no_secret", f"no secret for this signature scheme is set ({setting})")
    if not offered:
        raise SignatureError("bad_signature", "signature header has no v1 signature")
    for key in keys:
        mac = hmac.new(key, signed, hashlib.sha256)
        expected = mac.hexdigest() if hex_digest else base64.b64encode(mac.digest()).decode()
        # Every offered value is compared against every key, each in constant time.
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return
    raise SignatureError("bad_signature", "signature does not match any configured secret")


def parse_timestamp(text: str) -> float:
    """Unix seconds from a header of plain ASCII digits, in seconds or milliseconds."""
    if not _TIMESTAMP.fullmatch(text):
        raise SignatureError(
            "bad_timestamp",
            "signature timestamp must be whole seconds or milliseconds, digits only",
        )
    value = int(text)
    return value / 1000 if value > _MILLISECONDS_THRESHOLD else float(value)


def _check_time(text: str, now: float, tolerance: float) -> float:
    timestamp = parse_timestamp(text)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            "stale_timestamp",
            f"signature timestamp is {now - timestamp:+.0f}s from now (tolerance {tolerance:.0f}s)",
        )
    return timestamp


def sign_elfa(
    secret: str, *, timestamp: str, event_id: str, body: bytes, legacy: bool = False
) -> str:
    """The ``X-Auto-Signature`` value Auto sends (``legacy`` keys by ``SHA256(secret)``)."""
    key = hashlib.sha256(secret.encode()).digest() if legacy else secret.encode()
    signed = timestamp.encode() + b"." + event_id.encode() + b"." + body
    return "v1=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


def sign_standard(secret: str, *, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value of the Standard Webhooks scheme."""
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_auto_request(secret: str, *, timestamp: str, method: str, path: str, body: bytes) -> str:
    """``x-elfa-signature`` for a call to Auto: ``hex(HMAC_SHA256(secret, ts + METHOD + path + body))``.

    ``path`` is the mounted path (``/queries``, not ``/v2/auto/queries``), with its query string
    if any; ``body`` is the exact bytes sent (empty for none). Plain concatenation, no separators.
    """
    message = timestamp.encode() + method.upper().encode() + path.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
