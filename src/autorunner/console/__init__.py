"""The operator console at ``/console``: server-rendered pages (Starlette + Jinja2, htmx for
partial updates and server-sent events for live ones; no build step) over the store and queue a
process already has. Every page and action goes through ``operations``, as the CLI does.

``build_console`` returns the ASGI app ``probes.build_app`` mounts. Its one gate (``_Gate``)
stands in front of every route: without a session only the login page and the static files
answer; a read-only session may only read; every request that changes something needs the
operator role and the session's CSRF token. A page added later cannot forget it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autorunner.backends import Backends
from autorunner.config import Settings
from autorunner.console import auth, pages
from autorunner.console.auth import SESSION_SECONDS, Tokens
from autorunner.console.bulk import BulkRedrives
from autorunner.deciders import Decider
from autorunner.errors import Unavailable
from autorunner.notional import Valuer
from autorunner.policy import Policy

log = structlog.get_logger("autorunner.console")

HERE = Path(__file__).parent
OPEN = ("/login", "/static/")
"""The only paths answered without a session."""
SAFE_METHODS = ("GET", "HEAD")


@dataclass
class Console:
    """What the pages work with, given by the composition root: the policy the workers run
    (``policy``, read at each use: SIGHUP reloads it), and the deciders and valuers a replay
    or a rerun's preview decides with — the same the CLI's ``replay`` builds."""

    backends: Backends
    settings: Settings
    tokens: Tokens
    policy: Callable[[], Policy]
    deciders: Mapping[str, Decider]
    valuers: Mapping[str, Valuer]
    live_interval: float = 1.0
    max_live_streams: int = 20
    """Live pages one process serves at once (each reads the store every second)."""
    live_streams: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    bulk: BulkRedrives = field(default_factory=BulkRedrives)
    """Set when the process stops: live streams end, so shutdown does not wait on them."""


class _Gate:
    """Refuses every request the session does not allow; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if path.startswith(OPEN):
            await self._app(scope, receive, send)
            return
        who = auth.role(request)
        if who is None:
            if request.method in SAFE_METHODS and "hx-request" not in request.headers:
                target = request.url_for("login").include_query_params(next=path or "/")
                await RedirectResponse(str(target), status_code=303)(scope, receive, send)
            else:
                await PlainTextResponse("log in first", status_code=401)(scope, receive, send)
            return
        if request.method not in SAFE_METHODS:
            if who != "operator" and path != "/logout":
                response = PlainTextResponse("read-only: ask an operator", status_code=403)
                await response(scope, receive, send)
                return
            body = await request.body()  # read once here, handed on below
            if not await auth.csrf_ok(request):
                await PlainTextResponse("bad CSRF token", status_code=403)(scope, receive, send)
                return
            receive = _replaying(body, receive)
        await self._app(scope, receive, send)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app downstream of one that read the body already."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


ROUTES = [
    Route("/", pages.overview, name="overview"),
    Route("/login", pages.login_form, methods=["GET"], name="login"),
    Route("/login", pages.login, methods=["POST"]),
    Route("/logout", pages.logout, methods=["POST"], name="logout"),
    Route("/live", pages.live, name="live"),
    Route("/events", pages.events, name="events"),
    Route("/events/{event_id:path}/rerun", pages.rerun, methods=["POST"], name="rerun"),
    Route("/events/{event_id:path}", pages.event, name="event"),
    Route("/dead", pages.dead, name="dead"),
    Route("/dead/redrive", pages.redrive, methods=["POST"], name="redrive"),
    Route("/dead/redrive/{number:int}", pages.redrive_progress, name="redrive_progress"),
    Route("/effects", pages.effects, name="effects"),
    Route("/effects/resolve", pages.resolve, methods=["POST"], name="resolve"),
    Route("/approvals", pages.approvals, name="approvals"),
    Route("/approvals/{approval_id}/answer", pages.answer, methods=["POST"], name="answer"),
    Route("/pause", pages.pause, methods=["POST"], name="pause"),
    Route("/resume", pages.resume, methods=["POST"], name="resume"),
    Route("/replay", pages.replay_form, methods=["GET"], name="replay"),
    Route("/replay", pages.replay, methods=["POST"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]
"""Every page and action; ``_Gate`` guards them all."""


def build_console(console: Console) -> ASGIApp:
    """The console's ASGI app, to mount at ``/console``."""
    app = Starlette(
        routes=ROUTES,
        exception_handlers={Unavailable: pages.unavailable},
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=console.tokens.session_key,
                session_cookie="autorunner_console",
                path="/console",
                max_age=SESSION_SECONDS,
                same_site="strict",
                https_only=console.settings.console_secure_cookie,
            ),
            Middleware(_Gate),
        ],
    )
    app.state.console = console
    return app


def tokens_for(settings: Settings) -> Tokens:
    return Tokens.from_settings(
        settings.console_token.get_secret_value() if settings.console_token else None,
        settings.console_readonly_token.get_secret_value()
        if settings.console_readonly_token
        else None,
    )
