"""``send-test-event``: sign an event exactly as Auto does and POST it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx2
import orjson
import typer

from autorunner.cli import tools
from autorunner.errors import ConfigError
from autorunner.sim.sender import sample_event, send_event


def send_test_event(
    url: Annotated[str | None, typer.Argument(help="Webhook URL (default: this runner's).")] = None,
    event_id: Annotated[
        str | None,
        typer.Option(
            help="The delivery's X-Auto-Event-Id (default: a new UUID); the sample body carries"
            " it too. A body's own ids decide the stored event's id."
        ),
    ] = None,
    execution_id: Annotated[
        str | None, typer.Option(help="Execution id of the sample body (not with --body).")
    ] = None,
    body: Annotated[
        Path | None, typer.Option(help="JSON body file (default: a sample trigger).")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="Signing secret (default: first of AUTO_SECRET).", envvar=None),
    ] = None,
    legacy: Annotated[bool, typer.Option(help="Sign with the older SHA256(secret) key.")] = False,
    as_json: tools.JsonFlag = False,
) -> None:
    """Sign an event exactly as Auto does and POST it."""
    if body is not None and execution_id is not None:
        raise tools.UsageError(
            "--execution-id shapes the sample body: with --body, put executionId in the file"
        )
    settings = tools.settings()
    key = secret or (
        settings.auto_secret.get_secret_value().split(",")[0].strip()
        if settings.auto_secret
        else None
    )
    if not key:
        raise ConfigError("no signing secret: set AUTO_SECRET or pass --secret")
    target = url or f"http://{settings.host}:{settings.port}/webhooks/auto"
    eid = event_id or str(uuid.uuid4())
    if body is not None:
        try:
            payload = orjson.loads(body.read_bytes())
        except OSError as exc:
            raise tools.UsageError(f"cannot read {body}: {exc.strerror or exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise tools.UsageError(f"{body} is not JSON: {exc}") from exc
    else:
        payload = sample_event(event_id=eid, execution_id=execution_id)

    async def go() -> Any:
        async with httpx2.AsyncClient(timeout=10) as client:
            try:
                return await send_event(client, target, key, payload, event_id=eid, legacy=legacy)
            except httpx2.TransportError as exc:
                raise tools.Failure(f"cannot reach {target}: {exc}") from exc

    reply = tools.run(go)
    if as_json:
        tools.print_json({"status": reply.status, "eventId": eid, "response": reply.body})
    else:
        print(f"{reply.status} {orjson.dumps(reply.body).decode()}")
    if reply.status >= 300:
        raise typer.Exit(1)
