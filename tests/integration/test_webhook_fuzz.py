"""The webhook route under generated hostile input, on real SQLite and on PostgreSQL + Redis.

Hypothesis builds requests nobody polite would send — any JSON (deep, NUL-laden, huge numbers,
odd shapes), bytes that are not JSON, odd and repeated headers, timestamps and ids of every
kind — signed with the right secret, a wrong one, or not at all. Whatever it sends:

* the answer is one of the route's documented statuses, never a 5xx (no store outage here);
* nothing that is not signed with the secret is stored, as an event or as a rejected delivery;
* a ``202`` names an event the store holds, and every stored event prints as JSON.

The runner lives on an event loop of its own thread for the whole module, so each example is one
request, not one start-up.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autorunner.app import Runtime, build_runtime
from autorunner.backends import open_backends
from autorunner.config import Settings
from autorunner.views import dumps, event_detail
from tests.backends import DATABASE_URL, REDIS_URL
from tests.helpers import elfa_signature
from tests.services import need

T = TypeVar("T")
SECRET = "fuzz-secret"
DOCUMENTED = {200, 202, 400, 401, 405, 413, 415}


@dataclass
class Portal:
    """A runner on its own loop in a thread; ``call`` runs a coroutine there and waits."""

    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    http: httpx2.AsyncClient

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def post(self, body: bytes, headers: list[tuple[str, str]]) -> httpx2.Response:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return self.call(self.http.post("/webhooks/auto", content=body, headers=raw))

    def counts(self) -> tuple[int, int]:
        async def read() -> tuple[int, int]:
            audit = self.runtime.backends.store
            events = await audit.list_events(limit=100_000)
            rejected = await audit.list_rejected(limit=100_000)
            return len(events), len(rejected)

        return self.call(read())


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


@pytest.fixture(scope="module", params=["sqlite", "postgres-redis"])
def portal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Portal]:
    if request.param != "sqlite":
        need("postgres")
        need("redis")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), daemon=True)
    thread.start()
    cleanup: list[Coroutine[Any, Any, Any]] = []

    async def start() -> Portal:
        if request.param == "sqlite":
            folder = tmp_path_factory.mktemp("fuzz")
            config = Settings(
                queue_url=f"sqlite:///{Path(folder) / 'fuzz.db'}",
                auto_secret=SECRET,
                workers_enabled=False,
            )
        else:
            schema = f"fuzz_{uuid.uuid4().hex[:10]}"
            config = Settings(
                runner_mode="cloud",
                queue_url=REDIS_URL,
                queue_name=schema,
                database_url=f"{DATABASE_URL}?options=-csearch_path%3D{schema}",
                auto_secret=SECRET,
            )
            import psycopg  # noqa: PLC0415 - only this backend needs the schema made

            async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
                await conn.execute(f"CREATE SCHEMA {schema}".encode())

            async def drop() -> None:
                async with await psycopg.AsyncConnection.connect(
                    DATABASE_URL, autocommit=True
                ) as conn:
                    await conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())

            cleanup.append(drop())
        backends = await open_backends(config)
        runtime = build_runtime(
            config, backends, role="ingress" if request.param != "sqlite" else "serve"
        )
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=runtime.app), base_url="http://runner"
        )
        return Portal(loop=loop, runtime=runtime, http=http)

    running = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    try:
        yield running
    finally:

        async def stop() -> None:
            await running.http.aclose()
            await running.runtime.aclose()
            for step in cleanup:
                await step

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["\x00", "\u2028", "\ud7ff", "${title}", "../executions?limit=1#x"])
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int) -> bytes:
    """A canonical-looking body ``depth`` objects deep (past what orjson itself would write)."""
    return b'{"n":' * depth + b'{"eventId":"deep"}' + b"}" * depth


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["canonical", "notification", "stream", "any", "deep", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "deep":
        return nested(draw(st.integers(20, 1100)))
    extra = draw(st.dictionaries(st.text(max_size=12), JSON, max_size=4))
    ids = st.one_of(st.text(max_size=30), st.integers(), JSON)
    if shape == "canonical":
        body = {
            "eventId": draw(ids),
            "eventType": draw(ids),
            "queryId": draw(ids),
            "trigger": draw(JSON),
        }
    elif shape == "notification":
        body = {"id": draw(ids), "type": draw(ids), "title": draw(JSON), "data": draw(JSON)}
    elif shape == "stream":
        body = {"status": draw(JSON), "executionId": draw(ids), "queryId": draw(ids)}
    else:
        body = {}
    return json.dumps({**body, **extra}).encode()  # json: integers past 64 bits too


HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]], bool]:
    """A body, its headers, and whether it carries a valid signature under ``SECRET``."""
    body = draw(payloads())
    now = int(time.time())
    ts = draw(
        st.sampled_from([str(now), str(now * 1000), f"{now}.5", f"+{now}", "", str(now - 10_000)])
        | HEADER_TEXT
    )
    event_id = draw(st.sampled_from(["", "evt-1", "a.b"]) | HEADER_TEXT.filter(str.isprintable))
    key = draw(st.sampled_from([SECRET, "wrong-secret", None]))
    headers = [
        (
            "content-type",
            draw(st.sampled_from(["application/json", "text/plain", "x+json"]) | HEADER_TEXT),
        ),
        ("x-auto-event-id", event_id),
        ("x-auto-signature-timestamp", ts),
    ]
    if key is not None:
        headers.append(("x-auto-signature", elfa_signature(key, ts, event_id, body)))
    headers += draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["x-auto-event-id", "webhook-signature", "x-auto-timestamp", "x-other"]
                ),
                HEADER_TEXT,
            ),
            max_size=2,
        )
    )
    return body, headers, key == SECRET


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_no_hostile_request_gets_a_5xx_or_stores_what_is_not_signed(
    portal: Portal, request: tuple[bytes, list[tuple[str, str]], bool]
) -> None:
    body, headers, signed_right = request
    before = portal.counts()
    response = portal.post(body, headers)
    assert response.status_code in DOCUMENTED, response.text
    answer = response.json()
    after = portal.counts()
    if not signed_right:
        assert after == before, "something not signed with the secret was stored"
    if response.status_code == 202:
        assert after[0] == before[0] + 1
        detail = portal.call(portal.runtime.backends.store.get_event(answer["eventId"]))
        assert detail is not None
        orjson.loads(dumps(detail.to_dict()))  # what `events show --json` prints
        assert event_detail(detail)  # and `events show`
    elif response.status_code == 400:
        assert after[1] == before[1] + (1 if signed_right else 0)
    else:
        assert after == before or response.status_code == 200
