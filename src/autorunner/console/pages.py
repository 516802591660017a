"""The console's pages and actions; each reads or acts through ``operations`` or the store's
audit queries, as the CLI does (``console`` builds the app and guards it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
import structlog
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from autorunner import operations
from autorunner.console import auth
from autorunner.console.bulk import BULK_MAX
from autorunner.errors import ConfigError, OperationRefused, Unavailable
from autorunner.policy_file import parse_policy

if TYPE_CHECKING:
    from autorunner.console import Console

log = structlog.get_logger("autorunner.console")

PAGE = 50
"""Events per page."""
REPLAY_MAX = 5000
MAX_POLICY_BYTES = 256 * 1024
"""Most events one replay from the console decides again (the CLI takes more)."""
LIVE_SECONDS = 300.0
"""How long one live stream lasts; the browser opens the next through the gate (a session
that ended gets no more)."""
RECENT_CAP = 10_000
"""Most events the overview counts for its ingest rate (last minute); past it, shown as ≥."""
DEAD_SHOWN = 500
"""Dead letters listed on the page (a filter's bulk redrive takes every match)."""
FILTERS = ("status", "route", "query", "symbol", "since", "until")
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(at: float | None) -> str:
    return "—" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def segment(value: str) -> str:
    """An id as one URL path segment: ids come from signed payloads and may hold ``/ ? # ..``."""
    return quote(value, safe="")


templates.env.filters["when"] = _when
templates.env.filters["pretty"] = _pretty
templates.env.filters["segment"] = segment


def _console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def _page(request: Request, name: str, code: int = 200, **context: Any) -> Response:
    context.update(role=auth.role(request), csrf=auth.csrf_token(request))
    return templates.TemplateResponse(request, name, context, status_code=code)


def _message(request: Request, title: str, text: str, code: int = 200) -> Response:
    return _page(request, "message.html", code, title=title, text=text)


# -- login -------------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    return _page(request, "login.html", next=request.query_params.get("next", "/"), error=None)


async def login(request: Request) -> Response:
    form = await request.form()
    target = str(form.get("next") or "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # never a redirect off the console
    if not await auth.csrf_ok(request):
        return _page(request, "login.html", 403, next=target, error="The form expired; again.")
    role = _console(request).tokens.role_of(str(form.get("token", "")))
    client = request.client.host if request.client else "unknown"
    if role is None:
        log.warning("console.login_refused", client=client)
        return _page(request, "login.html", 401, next=target, error="That token is not valid.")
    request.session.clear()
    request.session["role"] = role
    request.session["name"] = auth.login_name(str(form.get("name", "")))
    auth.csrf_token(request)
    log.info("console.login", who=auth.actor(request))
    return RedirectResponse(request.url_for("overview").path.rstrip("/") + target, 303)


async def logout(request: Request) -> Response:
    log.info("console.logout", who=auth.actor(request))
    request.session.clear()
    return RedirectResponse(str(request.url_for("login")), 303)


async def unavailable(request: Request, exc: Exception) -> Response:
    return _message(request, "Store unavailable", str(exc), 503)


# -- overview and live updates -------------------------------------------------------------------


async def _overview(console: Console) -> dict[str, Any]:
    now = time.time()
    status = await operations.status(console.backends, console.settings, done=False)
    recent = await console.backends.store.count_received(since=now - 60, cap=RECENT_CAP)
    status["ingest_per_minute"] = recent
    status["ingest_capped"] = recent == RECENT_CAP
    return status


async def overview(request: Request) -> Response:
    try:
        status = await _overview(_console(request))
    except Unavailable as exc:
        return _message(request, "Store unavailable", str(exc), 503)
    return _page(request, "overview.html", status=status)


async def live(request: Request) -> Response:
    """Server-sent events: the overview and the newest events, when they change."""
    console = _console(request)

    async def pause() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(console.stopping.wait(), console.live_interval)

    if console.live_streams >= console.max_live_streams:
        return Response("too many live pages open", status_code=503, headers={"retry-after": "30"})

    async def frames() -> AsyncIterator[bytes]:
        sent: dict[str, str] = {}
        ends = time.monotonic() + LIVE_SECONDS
        console.live_streams += 1
        try:
            async for frame in updates(sent, ends):
                yield frame
        finally:
            console.live_streams -= 1

    async def updates(sent: dict[str, str], ends: float) -> AsyncIterator[bytes]:
        while (
            not console.stopping.is_set()
            and time.monotonic() < ends
            and not await request.is_disconnected()
        ):
            try:
                status = await _overview(console)
                newest = await console.backends.store.list_events(limit=PAGE)
            except Unavailable:
                await pause()
                continue
            parts = {
                "overview": templates.get_template("_overview.html").render(status=status),
                "events": templates.get_template("_event_rows.html").render(
                    events=newest, url_for=request.url_for
                ),
            }
            for name, html in parts.items():
                if sent.get(name) != html:
                    sent[name] = html
                    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
                    yield f"event: {name}\n{data}\n\n".encode()
            await pause()

    return StreamingResponse(
        frames(), media_type="text/event-stream", headers={"cache-control": "no-store"}
    )


# -- events ------------------------------------------------------------------------------------


async def events(request: Request) -> Response:
    console = _console(request)
    params = request.query_params
    wanted = params.get("q", "").strip()
    if wanted:
        found = await console.backends.store.find_event(wanted)
        if found is not None:
            return RedirectResponse(str(request.url_for("event", event_id=segment(found))), 303)
    status = params.get("status") or None
    if status not in (None, "pending", "running", "done", "dead"):
        return _message(request, "Bad filter", f"no status {status!r}", 400)
    try:
        before = float(params["before"]) if params.get("before") else None
        since = _local_time(params.get("since", ""))
        until = _local_time(params.get("until", ""))
    except ValueError:
        return _message(request, "Bad filter", "times are YYYY-MM-DDTHH:MM, local time", 400)
    if before is not None:
        until = before if until is None else min(until, before)
    found_events = await console.backends.store.list_events(
        limit=PAGE,
        status=status,  # type: ignore[arg-type]  # checked above
        since=since,
        until=until,
        query_id=params.get("query") or None,
        route=params.get("route") or None,
        symbol=params.get("symbol") or None,
    )
    filters = {k: params.get(k, "") for k in FILTERS}
    return _page(
        request,
        "events.html",
        events=found_events,
        searched=wanted,
        filters=filters,
        more=found_events[-1].received_at if len(found_events) == PAGE else None,
        live=before is None and not any(filters.values()),
    )


def _local_time(given: str) -> float | None:
    """A ``datetime-local`` input's value as seconds since the epoch; None for none."""
    if not given:
        return None
    return time.mktime(time.strptime(given[:16], "%Y-%m-%dT%H:%M"))


async def event(request: Request) -> Response:
    console = _console(request)
    try:
        detail = await operations.find(console.backends, request.path_params["event_id"])
    except OperationRefused as exc:
        return _message(request, "No such event", str(exc), 404)
    return _page(request, "event.html", detail=detail)


async def rerun(request: Request) -> Response:
    console = _console(request)
    event_id = request.path_params["event_id"]
    form = await request.form()
    try:
        if form.get("confirm") != "yes":
            planned = await operations.plan_rerun(
                console.backends,
                console.policy(),
                console.deciders,
                valuers=console.valuers,
                event_id=event_id,
            )
            return _page(request, "rerun.html", planned=planned[0], event_id=event_id)
        generation = await operations.rerun(console.backends, event_id, by=auth.actor(request))
    except (OperationRefused, ConfigError) as exc:
        return _message(request, "Not rerun", str(exc), 409)
    return _message(request, "Rerun started", f"{event_id}: generation {generation} queued")


# -- dead letters, effects, the kill switch ----------------------------------------------------


def _dead_filters(source: Mapping[str, Any]) -> dict[str, str | None]:
    """The dead-letter filters of a query string or a form: ``reason`` (contained in the
    reason, as written) and ``route``."""
    return {k: str(source.get(k) or "").strip() or None for k in ("reason", "route")}


async def dead(request: Request) -> Response:
    console = _console(request)
    filters = _dead_filters(request.query_params)
    letters = await console.backends.store.list_dead_letters(limit=DEAD_SHOWN, **filters)
    return _page(
        request,
        "dead.html",
        letters=letters,
        filters={k: v or "" for k, v in filters.items()},
        filtered=any(filters.values()),
        running=console.bulk.running(),
        shown=DEAD_SHOWN,
    )


async def redrive(request: Request) -> Response:
    """Chosen dead letters, or every one a filter matches: a preview of how many, then on
    confirmation a bulk redrive in the background with its progress page."""
    console = _console(request)
    form = await request.form()
    chosen = [str(value) for value in form.getlist("event_id")]
    matching = form.get("matching") == "yes"
    filters = _dead_filters(form)
    if not chosen and not matching:
        return _message(request, "Nothing chosen", "pick dead letters, or all that match", 400)
    if matching:
        letters = await console.backends.store.list_dead_letters(limit=BULK_MAX, **filters)
        chosen = [d.event_id for d in letters]
    if form.get("confirm") != "yes":
        return _page(
            request,
            "redrive.html",
            chosen=[] if matching else chosen,
            matching=matching,
            filters={k: v or "" for k, v in filters.items()},
            total=len(chosen),
            capped=len(chosen) == BULK_MAX,
        )
    if console.bulk.running() is not None:
        return _message(request, "Redrive running", "one bulk redrive at a time: wait for it", 409)
    run = console.bulk.start(console.backends, chosen, by=auth.actor(request))
    return RedirectResponse(str(request.url_for("redrive_progress", number=run.number)), 303)


async def redrive_progress(request: Request) -> Response:
    run = _console(request).bulk.get(request.path_params["number"])
    if run is None:
        return _message(request, "No such redrive", "it ended long ago, or never began", 404)
    fragment = "hx-request" in request.headers
    return _page(request, "_progress.html" if fragment else "progress.html", run=run)


async def effects(request: Request) -> Response:
    found = await _console(request).backends.store.list_effects(limit=500, status="unknown")
    return _page(request, "effects.html", effects=found)


async def resolve(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    key = str(form.get("effect_key", ""))
    resolution = form.get("resolution")
    if resolution not in ("sent", "resend"):
        return _message(
            request, "Not resolved", "say whether it was sent, or to send it again", 400
        )
    if resolution == "resend" and form.get("confirm") != "yes":
        return _page(request, "resend.html", effect_key=key)
    try:
        resolved = await operations.resolve_effect(
            console.backends,
            key,
            resend=resolution == "resend",
            note=str(form.get("note") or "") or None,
            by=auth.actor(request),
        )
    except OperationRefused as exc:
        return _message(request, "Not resolved", str(exc), 409)
    what = "sent again" if resolved.reopened else "marked as sent"
    return _message(request, "Resolved", f"{key}: {what}")


async def approvals(request: Request) -> Response:
    store = _console(request).backends.store
    waiting = await store.list_approvals(limit=500, status="pending")
    answered = [a for a in await store.list_approvals(limit=100) if a.status != "pending"]
    found = waiting + answered  # what waits for a person first, however old
    return _page(request, "approvals.html", approvals=found)


async def answer(request: Request) -> Response:
    form = await request.form()
    approval_id = request.path_params["approval_id"]
    choice = form.get("answer")
    if choice not in ("approve", "reject"):
        return _message(request, "Not answered", "say approve or reject", 400)
    try:
        answered = await operations.answer_approval(
            _console(request).backends,
            approval_id,
            approve=choice == "approve",
            via="console",
            by=auth.actor(request),
            reason=str(form.get("reason") or "") or None,
        )
    except OperationRefused as exc:
        return _message(request, "Not answered", str(exc), 409)
    view = answered.view
    return _message(
        request, "Answered", f"{view.approval_id} {view.status}: event {view.event_id} goes on"
    )


async def pause(request: Request) -> Response:
    form = await request.form()
    reason = str(form.get("reason") or "paused from the console")
    await operations.pause(_console(request).backends, reason, by=auth.actor(request))
    return RedirectResponse(str(request.url_for("overview")), 303)


async def resume(request: Request) -> Response:
    await operations.resume(_console(request).backends, by=auth.actor(request))
    return RedirectResponse(str(request.url_for("overview")), 303)


# -- replay --------------------------------------------------------------------------------------


def _replay_limit(given: str) -> int:
    limit = int(given)
    if not 1 <= limit <= REPLAY_MAX:
        raise ValueError(f"events: a number from 1 to {REPLAY_MAX}")
    return limit


async def replay_form(request: Request) -> Response:
    return _page(request, "replay.html", policy_text="", summary=None, error=None)


async def replay(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    text = str(form.get("policy", ""))
    upload = form.get("policy_file")
    if not text.strip() and isinstance(upload, UploadFile) and upload.filename:
        text = (await upload.read(MAX_POLICY_BYTES + 1)).decode("utf-8", errors="replace")
        if len(text) > MAX_POLICY_BYTES:
            text = ""
    try:
        limit = _replay_limit(str(form.get("limit") or 200))
        policy = parse_policy(text, source="the pasted policy")
        summary = await operations.replay_window(
            console.backends,
            policy,
            console.deciders,
            valuers=console.valuers,
            since=None,
            until=None,
            limit=limit,
        )
    except (ConfigError, ValueError) as exc:
        return _page(request, "replay.html", 400, policy_text=text, summary=None, error=str(exc))
    return _page(request, "replay.html", policy_text=text, summary=summary, error=None)
