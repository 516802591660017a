"""The http and telegram adapters against real local HTTP servers speaking their protocols."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import orjson
import pytest

from autorunner import signatures
from autorunner.adapters.base import already_sending
from autorunner.adapters.http import HttpAdapter
from autorunner.adapters.relay import RelayAdapter
from autorunner.adapters.telegram import MAX_TEXT, ParseMode, TelegramAdapter, escape
from autorunner.decision import Action
from autorunner.errors import DeliveryUnknown, PermanentError, TransientError
from tests.fake_http import Reply, ScriptedServer, serving
from tests.helpers import make_event

TOKEN = "123:secret-token"
EVENT = make_event("evt-1")


@asynccontextmanager
async def http_adapter(
    server: ScriptedServer, secret: str | None = "api-secret"
) -> AsyncIterator[HttpAdapter]:
    async with serving(server) as base, httpx2.AsyncClient() as http:
        yield HttpAdapter(
            http=http, endpoints={"orders": f"{base}/orders"}, secret=secret, timeout=0.5
        )


@asynccontextmanager
async def telegram(
    server: ScriptedServer, mode: ParseMode = "plain"
) -> AsyncIterator[TelegramAdapter]:
    async with serving(server) as base, httpx2.AsyncClient() as http:
        yield TelegramAdapter(
            http=http, token=TOKEN, chats={"desk": "-100200"}, api_base=base, parse_mode=mode
        )


ORDER = Action(
    step_id="order", kind="http", params={"endpoint": "orders", "body": {"symbol": "BTC", "qty": 1}}
)


async def test_http_calls_carry_the_effect_key_and_a_verifiable_signature() -> None:
    server = ScriptedServer()
    server.on("POST", "/orders", Reply(201, {"id": "o-1"}))
    async with http_adapter(server) as adapter:
        result = await adapter.execute(
            ORDER, effect_key="evt-1:order", event=EVENT, sending=already_sending
        )
    assert result == {"status": 201, "endpoint": "orders", "response": {"id": "o-1"}}
    [request] = server.requests
    assert request.headers["idempotency-key"] == "evt-1:order"
    assert orjson.loads(request.body) == {"symbol": "BTC", "qty": 1}
    ts = request.headers["x-autorunner-timestamp"]
    expected = hmac.new(
        b"api-secret", f"{ts}.evt-1:order.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-autorunner-signature"] == "v1=" + expected


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TransientError),
        (503, TransientError),
        (429, TransientError),
        (400, PermanentError),
        (404, PermanentError),
    ],
)
async def test_http_5xx_and_429_are_retryable_other_4xx_permanent(
    status: int, error: type[Exception]
) -> None:
    server = ScriptedServer()
    server.on("POST", "/orders", Reply(status, {"error": "x"}, {"retry-after": "7"}))
    async with http_adapter(server) as adapter:
        with pytest.raises(error) as info:
            await adapter.execute(ORDER, effect_key="k", event=EVENT, sending=already_sending)
    if isinstance(info.value, TransientError):
        assert info.value.retry_after == 7


async def test_http_endpoint_must_be_configured_never_a_url_from_the_decision() -> None:
    async with http_adapter(ScriptedServer()) as adapter:
        with pytest.raises(PermanentError, match="not configured"):
            await adapter.execute(
                Action(step_id="x", kind="http", params={"endpoint": "http://evil/"}),
                effect_key="k",
                event=EVENT,
                sending=already_sending,
            )


async def test_http_timeout_is_retryable() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(
                65536
            ):  # take the request, never answer, until the client hangs up
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx2.AsyncClient() as http:
            adapter = HttpAdapter(
                http=http, endpoints={"slow": f"http://127.0.0.1:{port}/"}, timeout=0.1
            )
            with pytest.raises(TransientError, match="timed out"):
                await adapter.execute(
                    Action(step_id="x", kind="http", params={"endpoint": "slow"}),
                    effect_key="k",
                    event=EVENT,
                    sending=already_sending,
                )
    finally:
        server.close()
        await server.wait_closed()


async def test_a_telegram_request_left_unanswered_may_have_been_delivered() -> None:
    """Sent, then no answer (a read timeout): the message may be in the chat, so the effect's
    outcome is unknown — never a plain failure that an at-most-once ledger would resend."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sent: list[bool] = []

    async def sending() -> None:
        sent.append(True)

    try:
        async with httpx2.AsyncClient(timeout=0.1) as http:
            adapter = TelegramAdapter(
                http=http, token=TOKEN, chats={"desk": "1"}, api_base=f"http://127.0.0.1:{port}"
            )
            with pytest.raises(DeliveryUnknown, match="telegram did not answer"):
                await adapter.execute(
                    Action(step_id="t", kind="telegram", params={"chat": "desk", "text": "hi"}),
                    effect_key="k",
                    event=EVENT,
                    sending=sending,
                )
    finally:
        server.close()
        await server.wait_closed()
    assert sent == [True]


async def test_a_telegram_that_cannot_be_reached_never_got_the_message() -> None:
    async with httpx2.AsyncClient(timeout=1) as http:
        adapter = TelegramAdapter(
            http=http, token=TOKEN, chats={"desk": "1"}, api_base="http://127.0.0.1:9"
        )
        with pytest.raises(TransientError) as info:
            await adapter.execute(
                Action(step_id="t", kind="telegram", params={"chat": "desk", "text": "hi"}),
                effect_key="k",
                event=EVENT,
                sending=already_sending,
            )
    assert not isinstance(info.value, DeliveryUnknown)


async def test_telegram_sends_to_the_named_chat_and_returns_the_message_id() -> None:
    server = ScriptedServer()
    server.on(
        "POST", f"/bot{TOKEN}/sendMessage", Reply(200, {"ok": True, "result": {"message_id": 42}})
    )
    async with telegram(server) as adapter:
        result = await adapter.execute(
            Action(step_id="t", kind="telegram", params={"chat": "desk", "text": "hi"}),
            effect_key="k",
            event=EVENT,
            sending=already_sending,
        )
    assert result == {"chat": "desk", "message_id": 42}
    assert orjson.loads(server.requests[0].body) == {"chat_id": "-100200", "text": "hi"}


async def test_telegram_429_honours_retry_after_and_never_leaks_the_token() -> None:
    server = ScriptedServer()
    server.on(
        "POST",
        f"/bot{TOKEN}/sendMessage",
        Reply(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests",
                "parameters": {"retry_after": 3},
            },
        ),
    )
    async with telegram(server) as adapter:
        with pytest.raises(TransientError) as info:
            await adapter.execute(
                Action(step_id="t", kind="telegram", params={"chat": "desk", "text": "hi"}),
                effect_key="k",
                event=EVENT,
                sending=already_sending,
            )
    assert info.value.retry_after == 3
    assert TOKEN not in str(info.value)


async def test_telegram_bad_chat_is_permanent_and_long_text_is_cut_and_escaped() -> None:
    server = ScriptedServer()
    server.on(
        "POST",
        f"/bot{TOKEN}/sendMessage",
        Reply(400, {"ok": False, "description": "Bad Request: chat not found"}),
    )
    async with telegram(server, mode="MarkdownV2") as adapter:
        with pytest.raises(PermanentError, match="chat not found"):
            await adapter.execute(
                Action(step_id="t", kind="telegram", params={"chat": "desk", "text": "a_b" * 3000}),
                effect_key="k",
                event=EVENT,
                sending=already_sending,
            )
        with pytest.raises(PermanentError, match="not configured"):
            await adapter.execute(
                Action(step_id="t", kind="telegram", params={"chat": "@someone", "text": "x"}),
                effect_key="k",
                event=EVENT,
                sending=already_sending,
            )
    sent = orjson.loads(server.requests[0].body)
    assert len(sent["text"]) == MAX_TEXT
    assert sent["text"].startswith("a\\_b")
    assert sent["parse_mode"] == "MarkdownV2"


def test_escaping_per_parse_mode() -> None:
    assert escape("1 < 2 & 3 > 2", "HTML") == "1 &lt; 2 &amp; 3 &gt; 2"
    assert escape("price: 1.5 (up!)", "MarkdownV2") == "price: 1\\.5 \\(up\\!\\)"
    assert escape("*as is*", "plain") == "*as is*"


async def test_relay_forwards_the_canonical_event_signed_per_standard_webhooks() -> None:
    server = ScriptedServer()
    server.on("POST", "/hook", Reply(204))
    event = make_event("evt-9", execution_id="ex-9", symbol="BTC")
    async with serving(server) as base, httpx2.AsyncClient() as http:
        adapter = RelayAdapter(
            http=http,
            targets={"desk": f"{base}/hook"},
            secret="whsec_" + base64.b64encode(b"k" * 24).decode(),
        )
        result = await adapter.execute(
            Action(step_id="fwd", kind="relay", params={"target": "desk"}),
            effect_key="evt-9:fwd",
            event=event,
            sending=already_sending,
        )
    assert result == {"status": 204, "target": "desk"}
    [request] = server.requests
    verified = signatures.verify(
        request.headers,
        request.body,
        secrets=signatures.Secrets.parse(None, "whsec_" + base64.b64encode(b"k" * 24).decode()),
        now=time.time(),
    )
    assert (verified.scheme, verified.delivery_id) == ("standard-webhooks", "evt-9:fwd")
    body = orjson.loads(request.body)
    assert (body["version"], body["eventId"], body["executionId"], body["trigger"]["symbol"]) == (
        "1.0",
        "evt-9",
        "ex-9",
        "BTC",
    )


async def test_relay_target_must_be_configured() -> None:
    async with httpx2.AsyncClient() as http:
        adapter = RelayAdapter(http=http, targets={}, secret="s")
        with pytest.raises(PermanentError, match="not configured"):
            await adapter.execute(
                Action(step_id="f", kind="relay", params={"target": "x"}),
                effect_key="k",
                event=EVENT,
                sending=already_sending,
            )
