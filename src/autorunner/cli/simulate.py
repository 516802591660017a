"""``simulate run|trigger``: a local fake Elfa Auto, and firing its triggers."""

from __future__ import annotations

from typing import Annotated, Any, cast

import httpx2
import typer

from autorunner import app as composition
from autorunner import serving
from autorunner.cli import tools

simulate_cli = typer.Typer(
    help="A local fake Elfa Auto, for demos, tests and benchmarks.", no_args_is_help=True
)


@simulate_cli.command("run")
def simulate_run(
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8787,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    api_key: Annotated[
        str | None, typer.Option(envvar="SIM_API_KEY", help="Required x-elfa-api-key.")
    ] = None,
    agent_secret: Annotated[
        str | None, typer.Option(envvar="SIM_AGENT_SECRET", help="Required x402 agent secret.")
    ] = None,
    hmac_secret: Annotated[
        str | None, typer.Option(envvar="SIM_HMAC_SECRET", help="Check request signatures.")
    ] = None,
    webhook_secret: Annotated[
        str, typer.Option(envvar="SIM_WEBHOOK_SECRET", help="Signs webhooks.")
    ] = "sim-webhook-secret",
    frames: Annotated[str, typer.Option(help="SSE frame version: A, B or C.")] = "C",
    webhook_body: Annotated[
        str, typer.Option(help="Webhook body shape: canonical or notification.")
    ] = "canonical",
    keepalive: Annotated[float, typer.Option(help="Seconds between keep-alive comments.")] = 15.0,
    every: Annotated[
        float, typer.Option(help="Also trigger every active query this often (0: never).")
    ] = 0.0,
) -> None:
    """Serve the simulator until Ctrl-C."""
    from autorunner.sim.frames import (  # noqa: PLC0415 - only this command needs them
        FrameVersion,
        WebhookShape,
    )
    from autorunner.sim.simulator import SimConfig, Simulator  # noqa: PLC0415

    if frames not in ("A", "B", "C"):
        raise tools.UsageError(f"--frames must be A, B or C, not {frames!r}")
    if webhook_body not in ("canonical", "notification"):
        raise tools.UsageError(
            f"--webhook-body must be canonical or notification, not {webhook_body!r}"
        )
    tools.settings()
    simulator = Simulator(
        SimConfig(
            api_key=api_key,
            agent_secret=agent_secret,
            hmac_secret=hmac_secret,
            webhook_secret=webhook_secret,
            frame_version=cast(FrameVersion, frames),
            webhook_shape=cast(WebhookShape, webhook_body),
            keepalive=keepalive,
        )
    )
    tools.serve_forever(
        serving.serve_app(simulator.app, host, port, name="simulate", tick=(every, simulator.tick))
    )


@simulate_cli.command("trigger")
def simulate_trigger(
    query_id: str,
    count: Annotated[int, typer.Option(help="How many triggers.")] = 1,
    url: Annotated[str, typer.Option(help="The simulator's address.")] = "http://127.0.0.1:8787",
    sse_only: Annotated[
        bool, typer.Option(help="Deliver by stream (and poll) only, no webhook.")
    ] = False,
    symbol: Annotated[
        str | None, typer.Option(help="The symbol the trigger names (BTC), in every channel.")
    ] = None,
) -> None:
    """Fire triggers of a simulated query."""
    if count < 1:
        raise tools.UsageError(f"--count must be at least 1, got {count}")
    body: dict[str, Any] = {
        "queryId": query_id,
        "count": count,
        "channels": ["sse"] if sse_only else ["webhook", "sse"],
    }
    if symbol:
        body["symbol"] = symbol

    async def go() -> Any:
        async with composition.http_client() as http:
            try:
                response = await http.post(f"{url.rstrip('/')}/_sim/trigger", json=body)
            except httpx2.TransportError as exc:
                raise tools.Failure(f"cannot reach the simulator at {url}: {exc}") from exc
            if response.status_code != 200:
                raise tools.Failure(f"simulator answered {response.status_code}: {response.text}")
            return response.json()

    print(f"fired {len(tools.run(go)['executions'])} trigger(s) on {query_id}")
