"""A hostile client against ``autorunner serve``, over raw sockets: stalled and slow clients are
dropped, headers are bounded, connections are capped without wedging, garbage after a request
does not take its answer away, and logs stay bounded whatever a request carries.

Every wait here is for the server to do something (answer, close); each is bounded by a socket
timeout well above the server's own limits, so a server that never acts fails the test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.acceptance.runner import Server, base_env, cli, start_server
from tests.helpers import canonical, signed

SECRET = "acceptance-secret"
LIMITS = {
    "HTTP_HEADER_TIMEOUT": "1",
    "HTTP_BODY_IDLE_TIMEOUT": "1",
    "HTTP_BODY_TIMEOUT": "2",
}
WAIT = 10.0
"""Longest wait for the server to act: several times its largest limit."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("hostile")
    env = base_env(folder / "runner.db", **LIMITS)
    running = start_server(env, folder, folder / "serve.log")
    yield running
    running.terminate()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout, and so a
    failed test, if it never does)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def read_until_closed_or_answered(sock: socket.socket) -> bytes:
    """One whole answer to a keep-alive request (its headers and ``content-length`` bytes)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def webhook_request(payload: dict[str, object], *, extra: bytes = b"") -> bytes:
    delivery = signed(payload, secret=SECRET)
    head = "".join(f"{k}: {v}\r\n" for k, v in delivery.headers.items())
    return (
        f"POST /webhooks/auto HTTP/1.1\r\nhost: runner\r\n{head}"
        f"content-length: {len(delivery.body)}\r\n\r\n".encode()
        + delivery.body
        + extra
    )


def trickle(sock: socket.socket, data: bytes, *, every: float) -> None:
    """Send ``data`` a byte every ``every`` seconds, as a slow client would, until the server
    closes the connection (a failed test if it has not within ``WAIT``)."""
    started = time.monotonic()
    with pytest.raises(ConnectionError):  # noqa: PT012 - the server closes while we send
        for byte in data:
            sock.sendall(bytes([byte]))
            time.sleep(every)  # the slow client itself
            assert time.monotonic() - started < WAIT, "the server never dropped the client"


def stored(server: Server, event_id: str) -> bool:
    db = server.log_path.parent / "runner.db"
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return row is not None


HEALTHZ = b"GET /healthz HTTP/1.1\r\nhost: runner\r\n\r\n"


def test_a_connection_that_sends_nothing_is_answered_408_and_closed(server: Server) -> None:
    with connect(server.port) as sock:
        answer = read_until_closed(sock)
    assert status_of(answer) == 408
    assert b"header_timeout" in answer


def test_cut_off_headers_are_answered_408_and_closed(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"POST /webhooks/auto HTTP/1.1\r\nhost: runner\r\ncontent-type: appl")
        assert status_of(read_until_closed(sock)) == 408


def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_header_timeout(
    server: Server,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\n" + b"x-slow: " + b"a" * 10_000
    with connect(server.port) as sock:
        trickle(sock, request, every=0.05)
        assert status_of(read_until_closed(sock)) in (0, 408)


def test_a_body_shorter_than_its_content_length_is_dropped_and_nothing_is_stored(
    server: Server,
) -> None:
    request = webhook_request(canonical("evt-short-body"))
    with connect(server.port) as sock:
        sock.sendall(request[:-10])
        answer = read_until_closed(sock)
    assert status_of(answer) == 408
    assert b"body_timeout" in answer
    assert not stored(server, "evt-short-body")


def test_a_body_trickled_under_the_idle_limit_is_still_cut_at_the_total_limit(
    server: Server,
) -> None:
    request = webhook_request(canonical("evt-trickled-body"))
    head, body = request.split(b"\r\n\r\n", 1)
    with connect(server.port) as sock:
        sock.sendall(head + b"\r\n\r\n")
        trickle(sock, body * 10, every=0.3)  # more than it takes, under the idle limit
    assert not stored(server, "evt-trickled-body")


@pytest.mark.parametrize("size", [70 * 1024, 2 * 1024 * 1024])
def test_oversized_headers_are_answered_431(server: Server, size: int) -> None:
    with connect(server.port) as sock:
        with contextlib.suppress(ConnectionError):  # refused before we finished: answer waits
            sock.sendall(b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * size + b"\r\n\r\n")
        answer = read_until_closed(sock)
    assert status_of(answer) == 431


def test_too_many_headers_are_answered_431(server: Server) -> None:
    headers = b"".join(b"x-h%d: 1\r\n" % i for i in range(101))
    with connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + headers + b"\r\n")
        assert status_of(read_until_closed(sock)) == 431


def test_healthz_answers_while_a_huge_header_is_being_sent(server: Server) -> None:
    with connect(server.port) as slow, connect(server.port) as probe:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 32 * 1024)
        probe.sendall(HEALTHZ)
        assert status_of(probe.recv(4096)) == 200


def test_garbage_after_a_valid_webhook_does_not_take_its_answer_away(server: Server) -> None:
    request = webhook_request(canonical("evt-then-garbage"), extra=b"\x00\xffNOT HTTP\r\n\r\n")
    with connect(server.port) as sock:
        sock.sendall(request)
        answer = read_until_closed(sock)
    assert status_of(answer) == 202
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["eventId"] == "evt-then-garbage"
    assert stored(server, "evt-then-garbage")


def test_garbage_alone_is_answered_400(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        assert status_of(read_until_closed(sock)) == 400


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(
    server: Server,
) -> None:
    with connect(server.port) as sock:
        sock.sendall(webhook_request(canonical("evt-half-closed")))
        sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock)
    assert status_of(answer) == 202
    assert stored(server, "evt-half-closed")


def test_a_client_that_half_closes_mid_body_is_closed_at_once(server: Server) -> None:
    request = webhook_request(canonical("evt-half-body"))
    with connect(server.port) as sock:
        sock.settimeout(0.9)  # under the body's idle limit: the close must not be a timeout's
        sock.sendall(request[:-20])
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock) == b""
    assert not stored(server, "evt-half-body")


def test_megabyte_headers_and_values_grow_the_log_by_a_bounded_amount(server: Server) -> None:
    before = server.log_path.stat().st_size
    for _ in range(20):
        with connect(server.port) as sock:
            with contextlib.suppress(ConnectionError):
                sock.sendall(
                    b"POST /webhooks/auto HTTP/1.1\r\ncontent-type: "
                    + b"a" * 1024 * 1024
                    + b"\r\n\r\n"
                )
            assert status_of(read_until_closed(sock)) == 431
        with connect(server.port) as sock:
            sock.sendall(
                b"POST /webhooks/auto HTTP/1.1\r\ncontent-length: 2\r\ncontent-type: text/"
                + b"\t\xe9" * 30_000
                + b"\r\n\r\n{}"
            )
            assert status_of(read_until_closed(sock)) == 415
    with server.log_path.open("rb") as log:
        log.seek(before)
        grown = log.read()
    assert len(grown) < 20 * 2 * 1024, f"the log grew {len(grown)} bytes for 40 requests"
    assert max(map(len, grown.splitlines())) < 1024


@pytest.fixture
def few_descriptors(tmp_path: Path) -> Iterator[Server]:
    """A runner whose process may open only 256 files, as a small container might."""
    env = base_env(tmp_path / "runner.db", HTTP_HEADER_TIMEOUT="30")
    running = start_server(env, tmp_path, tmp_path / "serve.log", max_files=256)
    yield running
    running.terminate()


def test_past_the_connection_cap_new_clients_get_503_and_the_runner_keeps_working(
    few_descriptors: Server,
) -> None:
    server = few_descriptors
    [capped] = [line for line in server.log_lines() if line["event"] == "serve.connections_capped"]
    assert capped["allowed"] == 256 - 128
    kept = connect(server.port)
    clients = [connect(server.port) for _ in range(200)]
    try:
        answers = []
        for sock in clients:
            sock.sendall(HEALTHZ)
            answers.append(status_of(sock.recv(4096)))
        assert answers.count(200) == capped["allowed"] - 1  # the kept connection holds one place
        assert set(answers) == {200, 503}
        # Descriptors were kept for the store: a client already in keeps being served in full.
        kept.sendall(webhook_request(canonical("evt-at-the-cap")))
        assert status_of(kept.recv(4096)) == 202
        assert stored(server, "evt-at-the-cap")
    finally:
        for sock in clients:
            sock.close()
        kept.close()
    # Nothing wedged: once they have gone, a new client is served.
    deadline = time.monotonic() + WAIT
    while True:
        with connect(server.port) as sock:
            sock.sendall(HEALTHZ)
            if status_of(sock.recv(4096)) == 200:
                break
        assert time.monotonic() < deadline, "new clients were still refused"


def test_an_event_stored_before_nesting_was_bounded_still_prints(
    server: Server, tmp_path: Path
) -> None:
    # A record as an older runner could have kept it: its body nested 600 levels deep.
    with connect(server.port) as sock:
        sock.sendall(webhook_request(canonical("evt-shallow")))
        assert status_of(read_until_closed_or_answered(sock)) == 202
    deep = '{"n":' * 600 + '{"eventId":"evt-shallow"}' + "}" * 600
    db = server.log_path.parent / "runner.db"
    deadline = time.monotonic() + WAIT
    with sqlite3.connect(db) as conn:
        while conn.execute(
            "SELECT status FROM events WHERE event_id = 'evt-shallow'"
        ).fetchone() != ("done",):
            assert time.monotonic() < deadline, "the event never ran"
            time.sleep(0.05)
        conn.execute(
            "UPDATE events SET event_json = json_set(event_json, '$.payload', json(?))"
            " WHERE event_id = 'evt-shallow'",
            (deep,),
        )
    env = base_env(db)
    shown = cli(env, "events", "show", "evt-shallow", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "nested deeper than 64 levels" in shown.stdout
    assert orjson.loads(shown.stdout)["event"]["event_id"] == "evt-shallow"
    human = cli(env, "events", "show", "evt-shallow", cwd=tmp_path)
    assert human.returncode == 0, human.stderr


def test_a_signed_body_nested_past_the_bound_is_400_and_kept_as_rejected(
    server: Server, tmp_path: Path
) -> None:
    deep = json.loads('{"n":' * 40 + '{"eventId":"evt-too-deep"}' + "}" * 40)
    deep["eventId"] = "evt-too-deep"
    with connect(server.port) as sock:
        sock.sendall(webhook_request(deep))
        answer = read_until_closed_or_answered(sock)
    assert status_of(answer) == 400
    assert b"nests deeper than 32 levels" in answer
    rejected = cli(
        base_env(server.log_path.parent / "runner.db"), "rejected", "list", "--json", cwd=tmp_path
    )
    assert rejected.returncode == 0, rejected.stderr
    assert any("nests deeper" in row["reason"] for row in orjson.loads(rejected.stdout))


CHUNKED = (
    b"POST /webhooks/auto HTTP/1.1\r\nhost: runner\r\ncontent-type: application/json\r\n"
    b"transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
)


def test_trailers_after_a_chunked_body_are_refused_and_never_become_headers(
    server: Server,
) -> None:
    with connect(server.port) as sock:
        sock.sendall(CHUNKED + b"user-agent: injected-by-trailer\r\n\r\n")
        answer = read_until_closed(sock)
    assert status_of(answer) == 400
    assert b"trailers" in answer
    assert b"injected-by-trailer" not in (server.log_path.parent / "runner.db").read_bytes()


def test_a_trailer_that_never_ends_is_cut_off_at_the_size_limit(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(CHUNKED + b"x-t: ")
        with contextlib.suppress(ConnectionError):  # refused while we were still sending
            for _ in range(64):  # 4 MiB, far past what the server may hold
                sock.sendall(b"a" * 65536)
        answer = read_until_closed(sock)
    assert status_of(answer) in (0, 413)  # 0: reset before the answer could be read
    with connect(server.port) as probe:
        probe.sendall(HEALTHZ)
        assert status_of(probe.recv(4096)) == 200


def test_a_bad_request_pipelined_after_good_ones_leaves_them_their_answers(
    server: Server,
) -> None:
    before = server.log_path.stat().st_size
    bad = b"GET / HTTP/1.1\r\n" + b"".join(b"x-h%d: 1\r\n" % i for i in range(101)) + b"\r\n"
    with connect(server.port) as sock:
        sock.sendall(webhook_request(canonical("evt-before-bad")) + HEALTHZ + bad)
        answers = read_until_closed(sock)
    assert [status_of(b"HTTP/1.1 " + a) for a in answers.split(b"HTTP/1.1 ")[1:]] == [202, 200]
    assert stored(server, "evt-before-bad")
    with server.log_path.open("rb") as log:
        log.seek(before)
        grown = log.read()
    assert b"Traceback" not in grown
    assert b"Exception in ASGI application" not in grown


def test_many_small_requests_in_one_write_are_all_answered(server: Server) -> None:
    request = b"GET /healthz HTTP/1.1\r\nhost: runner\r\nx-pad: " + b"p" * 200 + b"\r\n\r\n"
    count = 400  # about 100 KiB in one write: more than one request's header limit
    with connect(server.port) as sock:
        sock.sendall(request * count)
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < count:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {received.count(b'HTTP/1.1 200 OK')} answers"
            received += chunk
    assert b"HTTP/1.1 4" not in received


def test_ignored_upgrades_grow_the_log_by_a_bounded_amount(server: Server) -> None:
    before = server.log_path.stat().st_size
    upgrade = (
        b"POST /healthz HTTP/1.1\r\nhost: runner\r\nconnection: upgrade\r\nupgrade: h2c\r\n"
        b"content-length: 0\r\n\r\n"
    )
    for _ in range(100):
        with connect(server.port) as sock:
            sock.sendall(upgrade)
            sock.recv(4096)
    grown = server.log_path.stat().st_size - before
    assert grown < 2048, f"the log grew {grown} bytes for 100 upgrade requests"
