"""Webhook verification and signing (pure: bytes and numbers in, a value or ``SignatureError`` out).

Two header sets are accepted (auto-contract §3):

* Elfa ``v1``: ``X-Auto-Event-Id``, ``X-Auto-Signature-Timestamp`` (seconds or milliseconds),
  ``X-Auto-Signature: v1=<hex>`` over ``timestamp + "." + eventId + "." + rawBody``, keyed by the
  secret's bytes (current) or by ``SHA256(secret)`` (older deliveries).
* Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64> …``
  over ``id + "." + timestamp + "." + rawBody``; a ``whsec_`` secret is base64-decoded first.

Several secrets may be configured at once (rotation); every one is tried, each comparison in
constant time. Unsigned deliveries pass only when the operator allows them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from autorunner.errors import SignatureError

Scheme = Literal["elfa-v1", "standard-webhooks", "unsigned"]
DEFAULT_TOLERANCE = 300.0
_MILLISECONDS_THRESHOLD = 100_000_000_000  # a Unix time above this is in milliseconds


@dataclass(frozen=True, kw_only=True, slots=True)
class Verified:
    """What verification established about a delivery."""

    scheme: Scheme
    delivery_id: str | None
    timestamp: float | None


class Secrets:
    """The configured webhook secrets, with every key each scheme derives from them (computed once)."""

    __slots__ = ("elfa_keys", "standard_keys")

    def __init__(self, values: tuple[str, ...]) -> None:
        self.elfa_keys: tuple[bytes, ...] = tuple(
            key for s in values for key in (s.encode(), hashlib.sha256(s.encode()).digest())
        )
        self.standard_keys: tuple[bytes, ...] = tuple(_standard_key(s) for s in values)

    @classmethod
    def parse(cls, text: str | None) -> Secrets:
        """Comma-separated secrets (rotation), blanks ignored."""
        return cls(tuple(s.strip() for s in (text or "").split(",") if s.strip()))

    def __repr__(self) -> str:
        return f"Secrets(<{len(self.standard_keys)} masked>)"


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
    ``bad_timestamp``, ``stale_timestamp`` or ``no_secret``.
    """
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
    timestamp = _check_time(ts_text, now, tolerance)
    event_id = headers.get("x-auto-event-id", "")
    signed = ts_text.encode() + b"." + event_id.encode() + b"." + body
    offered = [
        part.strip()[3:].lower()
        for part in headers["x-auto-signature"].split(",")
        if part.strip().startswith("v1=")
    ]
    _match(secrets.elfa_keys, signed, offered, hex_digest=True)
    return Verified(scheme="elfa-v1", delivery_id=event_id or None, timestamp=timestamp)


def _verify_standard(
    headers: Mapping[str, str], body: bytes, secrets: Secrets, now: float, tolerance: float
) -> Verified:
    msg_id = headers.get("webhook-id", "")
    ts_text = headers.get("webhook-timestamp", "")
    if not msg_id or not ts_text:
        raise SignatureError("missing_timestamp", "missing webhook-id or webhook-timestamp header")
    timestamp = _check_time(ts_text, now, tolerance)
    signed = msg_id.encode() + b"." + ts_text.encode() + b"." + body
    offered = [part[3:] for part in headers["webhook-signature"].split() if part.startswith("v1,")]
    _match(secrets.standard_keys, signed, offered, hex_digest=False)
    return Verified(scheme="standard-webhooks", delivery_id=msg_id, timestamp=timestamp)


def _match(
    keys: Sequence[bytes], signed: bytes, offered: Sequence[str], *, hex_digest: bool
) -> None:
    if not keys:
        raise SignatureError("no_secret", "no webhook secret is configured (AUTO_SECRET)")
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
    """Unix seconds from a header in seconds or milliseconds."""
    try:
        value = float(text.strip())
    except ValueError as exc:
        raise SignatureError("bad_timestamp", "signature timestamp is not a number") from exc
    if not math.isfinite(value):
        raise SignatureError("bad_timestamp", "signature timestamp is not a number")
    return value / 1000 if value > _MILLISECONDS_THRESHOLD else value


def _check_time(text: str, now: float, tolerance: float) -> float:
    timestamp = parse_timestamp(text)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            "stale_timestamp",
            f"signature timestamp is {now - timestamp:+.0f}s from now (tolerance {tolerance:.0f}s)",
        )
    return timestamp


def _standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except (binascii.Error, ValueError):
            return secret.encode()
    return secret.encode()


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
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_auto_request(secret: str, *, timestamp: str, method: str, path: str, body: bytes) -> str:
    """``x-elfa-signature`` for a call to Auto: ``hex(HMAC_SHA256(secret, ts + METHOD + path + body))``.

    ``path`` is the mounted path (``/queries``, not ``/v2/auto/queries``), with its query string
    if any; ``body`` is the exact bytes sent (empty for none). Plain concatenation, no separators.
    """
    message = timestamp.encode() + method.upper().encode() + path.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
