"""Who may use the console: a login by token, a signed session cookie, CSRF on every change.

Two roles: ``operator`` (``CONSOLE_TOKEN``) may act; ``readonly`` (``CONSOLE_READONLY_TOKEN``)
may look. A token is compared by its SHA-256 digest in constant time. The session is Starlette's
signed cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` with ``CONSOLE_SECURE_COOKIE``),
keyed from the tokens: every console process of a deployment accepts it, and changing a token
ends every session. Each session carries a random CSRF token that every state-changing request
must send back (a form field, or the ``X-CSRF-Token`` header htmx sends).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

Role = Literal["operator", "readonly"]
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    """The logins a console accepts; ``generated`` when the operator token was made at start
    (a loopback console with no ``CONSOLE_TOKEN``: the log shows it once)."""

    operator: str
    readonly: str | None = None
    generated: bool = False

    @classmethod
    def from_settings(cls, operator: str | None, readonly: str | None) -> Tokens:
        if operator is None:
            return cls(operator=secrets.token_urlsafe(24), readonly=readonly, generated=True)
        return cls(operator=operator, readonly=readonly)

    def role_of(self, given: str) -> Role | None:
        """The role ``given`` logs in as, compared in constant time; None for no role."""
        presented = _digest(given)
        operator = hmac.compare_digest(presented, _digest(self.operator))
        readonly = self.readonly is not None and hmac.compare_digest(
            presented, _digest(self.readonly)
        )
        if operator:
            return "operator"
        return "readonly" if readonly else None

    @property
    def session_key(self) -> str:
        """The key sessions are signed with, derived from the tokens."""
        material = f"{self.operator}\0{self.readonly or ''}".encode()
        return hmac.new(material, b"autorunner-console-session", hashlib.sha256).hexdigest()


def role(request: Request) -> Role | None:
    found = request.session.get("role")
    return found if found in ("operator", "readonly") else None


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


async def csrf_ok(request: Request) -> bool:
    """Whether a state-changing request carries this session's CSRF token."""
    expected = request.session.get("csrf")
    if not isinstance(expected, str):
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get("csrf")
        sent = field if isinstance(field, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def actor(request: Request) -> str:
    """Who acts, for the operators' journal: the name given at login (the token is shared by
    every operator), the role, and the client's address (a proxy's, behind one)."""
    client = request.client.host if request.client else "unknown"
    name = request.session.get("name") or "anonymous"
    return f"console:{name}:{role(request) or 'nobody'}@{client}"


def login_name(given: str) -> str:
    """The name given at login, as the journal keeps it: printable, 40 characters at most."""
    kept = "".join(c for c in given.strip() if c.isprintable() and c not in ":@")[:40]
    return kept or "anonymous"
