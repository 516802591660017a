"""The operator console from outside: ``autorunner serve`` in a subprocess, requests over HTTP
as a browser (or an attacker) would send them."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.routing import Mount, Route

from autorunner.console import OPEN, ROUTES
from autorunner.sim.sender import sample_event, signed_headers
from tests.acceptance.runner import SECRET, Server, base_env, cli, start_server
from tests.services import free_port

OPERATOR = "operator-token-0123456789"
READER = "readonly-token-0123456789"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = base_env(
        tmp_path / "console.db",
        CONSOLE_TOKEN=OPERATOR,
        CONSOLE_READONLY_TOKEN=READER,
        TALLY_INTERVAL="0.2",
    )
    running = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        yield running
    finally:
        running.terminate()


DYING_POLICY = """
[default]
allowed_actions = ["http"]
constraints = { max_attempts = 1 }
[[default.rules]]
actions = [{ step = "order", kind = "http", params = { endpoint = "orders", body = {} } }]
"""


@pytest.fixture
def dying(tmp_path: Path) -> Iterator[Server]:
    """A runner whose every event dies at its one attempt: nothing listens at its endpoint."""
    (tmp_path / "policy.toml").write_text(DYING_POLICY)
    env = base_env(
        tmp_path / "console.db",
        CONSOLE_TOKEN=OPERATOR,
        TALLY_INTERVAL="0.2",
        RUNNER_POLICY=str(tmp_path / "policy.toml"),
        HTTP_ENDPOINTS=f"orders=http://127.0.0.1:{free_port()}/orders",
    )
    running = start_server(env, tmp_path, tmp_path / "serve.log")
    try:
        yield running
    finally:
        running.terminate()


def base(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}/console"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def logged_in(server: Server, token: str) -> tuple[httpx2.Client, str]:
    """A client holding a session for ``token``, and the session's CSRF token."""
    client = httpx2.Client(base_url=base(server), timeout=10)
    form = client.get("/login")
    form_data = {"csrf": csrf_of(form.text), "token": token, "name": "alice", "next": "/"}
    answer = client.post("/login", data=form_data)
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    assert page.status_code == 200
    return client, csrf_of(page.text)


def send(server: Server, event_id: str) -> None:
    body = httpx2.Request("POST", server.url, json=sample_event(event_id=event_id)).read()
    answer = httpx2.post(
        server.url, content=body, headers=signed_headers(SECRET, body, event_id=event_id)
    )
    assert answer.status_code == 202


def every_route() -> list[tuple[str, str]]:
    """(method, path) of every console route, a path parameter filled in."""
    found = []
    for route in ROUTES:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{[^}]+\}", "1", route.path)  # every path parameter filled in
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def test_every_console_route_refuses_without_a_session(server: Server) -> None:
    closed = [(m, p) for m, p in every_route() if not p.startswith(OPEN)]
    assert len(closed) >= 14  # every page and action, as listed in console.ROUTES
    with httpx2.Client(base_url=base(server), timeout=10) as anonymous:
        for method, path in closed:
            answer = anonymous.request(method, path, data={"csrf": "x", "confirm": "yes"})
            assert answer.status_code in (303, 401), (method, path, answer.status_code)
            if answer.status_code == 303:
                assert "/console/login" in answer.headers["location"]


def test_a_wrong_token_is_refused_and_the_session_cookie_is_httponly_and_strict(
    server: Server,
) -> None:
    with httpx2.Client(base_url=base(server), timeout=10) as client:
        form = client.get("/login")
        wrong = client.post("/login", data={"csrf": csrf_of(form.text), "token": "guess" * 5})
        assert wrong.status_code == 401
        right = client.post(
            "/login", data={"csrf": csrf_of(wrong.text), "token": OPERATOR, "next": "/"}
        )
    cookie = right.headers["set-cookie"].lower()
    assert right.status_code == 303
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie


def test_a_login_never_redirects_off_the_console(server: Server) -> None:
    with httpx2.Client(base_url=base(server), timeout=10) as client:
        form = client.get("/login")
        answer = client.post(
            "/login",
            data={"csrf": csrf_of(form.text), "token": OPERATOR, "next": "//evil.example/"},
        )
    assert answer.headers["location"].endswith("/console/")


def test_a_readonly_session_may_look_but_not_act(server: Server, tmp_path: Path) -> None:
    client, csrf = logged_in(server, READER)
    with contextlib.closing(client):
        assert client.get("/events").status_code == 200
        refused = client.post("/pause", data={"csrf": csrf, "reason": "x"})
    assert refused.status_code == 403
    assert not paused(tmp_path)


def test_a_readonly_session_may_log_out(server: Server) -> None:
    client, csrf = logged_in(server, READER)
    with contextlib.closing(client):
        out = client.post("/logout", data={"csrf": csrf})
        after = client.get("/events")
    assert out.status_code == 303
    assert after.status_code == 303  # back to the login page


def test_a_replay_beyond_its_bounds_or_a_resolution_not_chosen_is_refused(server: Server) -> None:
    client, csrf = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        everything = client.post(
            "/replay", data={"csrf": csrf, "policy": "[default]\n", "limit": "-1"}
        )
        unchosen = client.post("/effects/resolve", data={"csrf": csrf, "effect_key": "e:x"})
    assert everything.status_code == 400
    assert "from 1 to 5000" in everything.text
    assert unchosen.status_code == 400


def test_an_id_with_path_characters_links_to_its_own_event(server: Server) -> None:
    odd = "x/../../resume?#"
    body = httpx2.Request(
        "POST", server.url, json=sample_event(event_id="plain-1", execution_id=odd)
    ).read()
    headers = signed_headers(SECRET, body, event_id="plain-1")
    assert httpx2.post(server.url, content=body, headers=headers).status_code == 202
    client, _ = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        rows = client.get("/events").text
        [href] = re.findall(r'href="([^"]*/events/x[^"]*)"', rows)
        page = client.get(href.removeprefix("http://testserver"))
    assert "%2F" in href
    assert page.status_code == 200
    assert "<code>x/../../resume?#</code>" in page.text


def test_an_action_without_the_session_csrf_token_is_refused(
    server: Server, tmp_path: Path
) -> None:
    client, _ = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        forged = client.post("/pause", data={"csrf": "forged", "reason": "x"})
        missing = client.post("/pause", data={"reason": "x"})
    assert (forged.status_code, missing.status_code) == (403, 403)
    assert not paused(tmp_path)


def test_pause_and_resume_from_the_console_are_journaled_with_who(
    server: Server, tmp_path: Path
) -> None:
    client, csrf = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        paused_page = client.post("/pause", data={"csrf": csrf, "reason": "checking"})
        assert paused_page.status_code == 303
        assert "Paused: checking" in client.get("/").text
        assert paused(tmp_path)
        client.post("/resume", headers={"x-csrf-token": csrf})
        assert not paused(tmp_path)
    with sqlite3.connect(tmp_path / "console.db") as db:
        journal = db.execute("SELECT actor, action FROM operations ORDER BY at").fetchall()
    assert journal == [
        ("console:alice:operator@127.0.0.1", "pause"),
        ("console:alice:operator@127.0.0.1", "resume"),
    ]


def test_an_event_page_shows_the_timeline_and_no_secret(server: Server) -> None:
    send(server, "console-1")
    client, _ = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        for _ in range(100):  # the worker runs it within moments
            page = client.get("/events/console-1")
            if "Attempt 1" in page.text:
                break
        found = client.get("/events", params={"q": "console-1"})
    assert page.status_code == 200
    for part in ("Delivery", "Event", "Attempt 1 (generation 1): done", "Ledger"):
        assert part in page.text
    assert SECRET not in page.text
    assert 'x-auto-signature"' not in page.text  # the signature header is never kept
    assert found.status_code == 303
    assert found.headers["location"].endswith("/console/events/console-1")


def test_console_on_on_a_public_bind_without_a_token_is_refused_at_start(tmp_path: Path) -> None:
    env = base_env(tmp_path / "on.db", HOST="0.0.0.0", CONSOLE="on")  # noqa: S104
    result = cli(env, "serve", cwd=tmp_path)
    assert result.returncode != 0
    assert "CONSOLE=on on 0.0.0.0 (not loopback) needs CONSOLE_TOKEN" in result.stderr


def test_the_console_is_off_on_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = base_env(tmp_path / "public.db", HOST="0.0.0.0")  # noqa: S104 - the case under test
    running = start_server(env, tmp_path, tmp_path / "public.log")
    try:
        answer = httpx2.get(f"http://127.0.0.1:{running.port}/console/login", timeout=10)
    finally:
        running.terminate()
    assert answer.status_code == 404


def paused(tmp_path: Path) -> bool:
    with sqlite3.connect(tmp_path / "console.db") as db:
        row = db.execute("SELECT value FROM flags WHERE name = 'paused'").fetchone()
    return row is not None


def test_events_filter_by_symbol_and_receive_time(server: Server) -> None:
    for event_id, symbol in (("f-btc", "BTC"), ("f-eth", "ETH")):
        body = httpx2.Request(
            "POST", server.url, json=sample_event(event_id=event_id, symbol=symbol)
        ).read()
        headers = signed_headers(SECRET, body, event_id=event_id)
        assert httpx2.post(server.url, content=body, headers=headers).status_code == 202
    client, _ = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        eth = client.get("/events", params={"symbol": "ETH"}).text
        future = client.get("/events", params={"since": "2999-01-01T00:00"}).text
        bad = client.get("/events", params={"since": "yesterday"})
    assert "f-eth" in eth
    assert "f-btc" not in eth
    assert "no events" in future
    assert bad.status_code == 400


def test_a_replay_takes_a_policy_file(server: Server) -> None:
    send(server, "file-1")
    client, csrf = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        answer = client.post(
            "/replay",
            data={"csrf": csrf, "policy": "", "limit": "10"},
            files={"policy_file": ("strict.toml", b"[default]\nallowed_actions = []\n")},
        )
    assert answer.status_code == 200, answer.text
    assert 'id="replay-counts"' in answer.text


def dead_soon(client: httpx2.Client, count: int) -> None:
    """Wait until ``count`` dead letters are listed (the sample events die: no Auto API)."""
    for _ in range(200):
        if client.get("/dead").text.count('name="event_id" value=') >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} dead letters never listed")


def test_a_bulk_redrive_of_what_a_filter_matches_shows_progress_and_journals_each(
    dying: Server, tmp_path: Path
) -> None:
    server = dying
    for n in range(3):
        send(server, f"bulk-{n}")
    client, csrf = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        dead_soon(client, 3)
        assert "no dead letters match" in client.get("/dead", params={"reason": "zzz"}).text
        reason = "orders"  # every one dies of the same: its endpoint refused
        listed = client.get("/dead", params={"reason": reason}).text
        assert listed.count('name="event_id" value="bulk-') == 3, listed
        form = {"csrf": csrf, "matching": "yes", "reason": reason, "route": ""}
        preview = client.post("/dead/redrive", data=form)
        assert "Redrive 3 dead letter(s)?" in preview.text
        started = client.post("/dead/redrive", data={**form, "confirm": "yes"})
        assert started.status_code == 303
        progress_url = started.headers["location"]
        assert re.search(r"/console/dead/redrive/\d+$", progress_url)
        for _ in range(200):  # the page's fragment, as htmx asks for it every second
            fragment = client.get(progress_url, headers={"hx-request": "true"}).text
            if "finished" in fragment:
                break
            time.sleep(0.05)
        assert "3 redriven" in fragment
        assert "3 of 3: finished" in fragment
        assert 'hx-trigger="every 1s"' not in fragment  # a finished one stops asking
        assert client.get("/dead/redrive/999999").status_code == 404
    with sqlite3.connect(tmp_path / "console.db") as db:
        journal = db.execute(
            "SELECT event_id, actor FROM operations WHERE action = 'dlq.redrive' ORDER BY event_id"
        ).fetchall()
    assert journal == [(f"bulk-{n}", "console:alice:operator@127.0.0.1") for n in range(3)]


def test_the_overview_and_status_count_refusals_by_reason_and_runs_by_outcome(
    dying: Server, tmp_path: Path
) -> None:
    server = dying
    send(server, "counted-1")
    forged = httpx2.post(
        server.url,
        content=b"{}",
        headers=signed_headers("another-secret-entirely", b"{}", event_id="forged"),
    )
    assert forged.status_code == 401
    client, _ = logged_in(server, OPERATOR)
    with contextlib.closing(client):
        dead_soon(client, 1)
        for _ in range(200):  # each process adds its counts every TALLY_INTERVAL
            page = client.get("/").text
            runs = table_of(page, "runs")
            refused = table_of(page, "refused")
            if ">dead</th><td>1<" in runs and "bad_signature" in refused:
                break
            time.sleep(0.05)
    assert re.search(r">dead</th><td>1<", runs), runs
    assert re.search(r">bad_signature</th><td>1<", refused), refused
    status = cli(base_env(tmp_path / "console.db"), "status", cwd=tmp_path)
    assert "runs         last hour: 1 dead" in status.stdout, status.stdout
    assert "refused      last hour: 1 bad_signature" in status.stdout, status.stdout


def table_of(page: str, table_id: str) -> str:
    found = re.search(rf'<table id="{table_id}">(.*?)</table>', page, re.S)
    assert found, f"no table {table_id} on the page"
    return found.group(1)
