"""No secret setting ever reaches a log line, an answer or a command's output: every setting the
runner treats as a secret is set to a value we can look for, and the runner is driven through
its ordinary path and every refusal a client can provoke."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx2
from pydantic import SecretStr

from autorunner.config import Settings
from tests.acceptance.runner import SECRET, Server, base_env, cli, start_server
from tests.helpers import canonical, elfa_signature, signed
from tests.services import free_port


def secret_settings() -> list[str]:
    """Every setting typed as a secret, as its environment variable."""
    return sorted(
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation) or field.annotation is SecretStr
    )


def whsec(seed: bytes) -> str:
    return "whsec_" + base64.b64encode(seed.ljust(24, b"-")).decode()


VALUES = {
    "AUTO_SECRET": SECRET,
    "STANDARD_WEBHOOKS_SECRET": whsec(b"standard-probe"),
    "RELAY_SECRET": whsec(b"relay-probe"),
    "ALERT_WEBHOOK_SECRET": whsec(b"alert-probe"),
    "ELFA_API_KEY": "elfa-api-key-probe",
    "ELFA_AGENT_SECRET": "elfa-agent-secret-probe",
    "ELFA_HMAC_SECRET": "elfa-hmac-secret-probe",
    "ELFA_PAYMENT_HEADER": "elfa-payment-probe",
    "HTTP_ADAPTER_SECRET": "http-adapter-secret-probe",
    "EXCHANGE_API_KEY": "exchange-api-key-probe",
    "EXCHANGE_SECRET": "exchange-secret-probe",
    "TELEGRAM_BOT_TOKEN": "123456:telegram-token-probe",
    "LLM_API_KEY": "sk-llm-key-probe",
    "CONSOLE_TOKEN": "console-operator-token-probe",
    "CONSOLE_READONLY_TOKEN": "console-readonly-token-probe",
    "TELEGRAM_WEBHOOK_SECRET": "telegram-webhook-secret-probe",
}


def test_the_probe_values_cover_every_secret_setting() -> None:
    assert sorted(VALUES) == secret_settings()


def test_no_secret_reaches_a_log_an_answer_or_an_output(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # Auto, the API, the relay: all unreachable
    env = base_env(
        tmp_path / "runner.db",
        **VALUES,
        ELFA_BASE_URL=f"{nowhere}/v2/auto",
        HTTP_ENDPOINTS=f"orders={nowhere}/orders",
        RELAY_TARGETS=f"desk={nowhere}/relay",
        TELEGRAM_CHATS="desk=1",
        TELEGRAM_API_URL=nowhere,
        EXCHANGE_ENABLED="true",
        LLM_MODEL="probe-model",
        LLM_BASE_URL=f"{nowhere}/v1",
        MAX_ATTEMPTS="2",
        RETRY_BASE_DELAY="0.05",
        ALERT_TELEGRAM_CHAT="9",  # alerts, which cannot be sent either
        ALERT_WEBHOOK_URL=f"{nowhere}/alerts",
        ALERT_INTERVAL="0.1",
    )
    server = start_server(env, tmp_path, tmp_path / "serve.log")
    seen: list[str] = []
    try:
        with httpx2.Client(timeout=10) as http:
            good = signed(canonical("sec-1"), secret=SECRET)
            answers = [http.post(server.url, content=good.body, headers=good.headers)]
            wrong = signed(canonical("sec-2"), secret="not-the-secret")
            stale = signed(canonical("sec-3"), secret=SECRET, ts=int(time.time()) - 10_000)
            unsigned = {"content-type": "application/json"}
            for body, headers in [
                (wrong.body, wrong.headers),
                (stale.body, stale.headers),
                (good.body, unsigned),
                (good.body, {**good.headers, "content-type": "text/plain"}),
                (good.body, {**good.headers, "webhook-signature": "v1,AAAA"}),
                (BROKEN, _signed_raw(BROKEN)),
            ]:
                answers.append(http.post(server.url, content=body, headers=headers))
            twice = [(k.encode(), v.encode()) for k, v in good.headers.items()]
            twice.append((b"x-auto-signature-timestamp", b"1"))
            answers.append(http.post(server.url, content=good.body, headers=twice))
        assert [a.status_code for a in answers] == [202, 401, 401, 401, 415, 401, 400, 401]
        seen += [a.text for a in answers]
        for args in (
            ("status",),
            ("status", "--json"),
            ("events", "list", "--json"),
            ("events", "show", "sec-1", "--json"),
            ("events", "show", "sec-1"),
            ("rejected", "list", "--json"),
            ("effects", "list", "--json"),
            ("policy", "check", str(tmp_path / "missing.toml")),
        ):
            shown = cli(env, *args, cwd=tmp_path)
            seen += [shown.stdout, shown.stderr]
        # The kill switch is an incident: its alert cannot be sent (nowhere) and says so.
        paused = cli(env, "pause", "--reason", "probe", cwd=tmp_path)
        seen += [paused.stdout, paused.stderr]
        deadline = time.monotonic() + 20
        while "alert.not_sent" not in server.log_path.read_text():
            assert time.monotonic() < deadline, "no alert was tried"
            time.sleep(0.05)
        seen += _console_pages(server)
        broken = cli({**env, "HTTP_NOTIONAL": "nope=x"}, "serve", cwd=tmp_path)
        assert broken.returncode == 2
        seen += [broken.stdout, broken.stderr]
    finally:
        server.terminate()
    seen.append(server.log_path.read_text())
    found = _leaks("\n".join(seen))
    assert found == {}, found
    logged = {json.loads(line).get("event") for line in _json_lines(seen[-1])}
    assert "webhook.rejected" in logged
    assert "alert.not_sent" in logged


def _console_pages(server: Server) -> list[str]:
    """Every console page an operator reads, logged in (the token is sent, never shown)."""
    base = f"http://127.0.0.1:{server.port}/console"
    with httpx2.Client(base_url=base, timeout=10) as client:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        client.post("/login", data={"csrf": csrf, "token": VALUES["CONSOLE_TOKEN"]})
        pages = ["/", "/events", "/events/sec-1", "/dead", "/effects", "/replay"]
        answers = [client.get(page) for page in pages]
    assert [a.status_code for a in answers] == [200] * len(pages)
    return [a.text for a in answers]


BROKEN = b'{"not": "an event"'


def _signed_raw(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "content-type": "application/json",
        "x-auto-event-id": "sec-broken",
        "x-auto-signature-timestamp": ts,
        "x-auto-signature": elfa_signature(SECRET, ts, "sec-broken", body),
    }


def _leaks(text: str) -> dict[str, Any]:
    """Each secret (or a recognisable part of one) found in ``text``."""
    leaks: dict[str, Any] = {}
    for name, value in VALUES.items():
        needle = value.removeprefix("whsec_")[:16] if value.startswith("whsec_") else value
        if needle in text:
            leaks[name] = text[max(0, text.index(needle) - 80) : text.index(needle) + 80]
    return leaks


def _json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("{")]
