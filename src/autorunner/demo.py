"""``autorunner serve --demo N``: the runner and a simulated Elfa Auto in one process.

The simulator gets a query whose webhook points at this runner, the runner subscribes to that
query's stream, and N triggers fire one a second — so a newcomer watches each one arrive by
webhook and by SSE (one run each, the other copy counted as a duplicate), get decided, and
notified. Every hop is real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import secrets

import structlog
from pydantic import SecretStr

from autorunner import serving
from autorunner.config import Settings
from autorunner.sim_api import SimQuery
from autorunner.simulator import SimConfig, Simulator

log = structlog.get_logger("autorunner.demo")

DEMO_API_KEY = "demo-key"


async def run_demo(settings: Settings, count: int) -> None:
    """Serve the runner with a simulator beside it until SIGINT/SIGTERM."""
    secret = (
        settings.auto_secret.get_secret_value().split(",")[0]
        if settings.auto_secret
        else secrets.token_hex(16)
    )
    simulator = Simulator(SimConfig(api_key=DEMO_API_KEY, webhook_secret=secret, keepalive=5.0))
    sim_sock = serving.listen("127.0.0.1", 0)
    runner_sock = serving.listen(settings.host, settings.port)
    runner_port = int(runner_sock.getsockname()[1])
    query = SimQuery(
        id="demo-query",
        body={
            "title": "Demo: BTC price probe",
            "query": {
                "conditions": {"AND": []},
                "actions": [
                    {
                        "stepId": "s1",
                        "type": "webhook",
                        "params": {"url": f"http://{settings.host}:{runner_port}/webhooks/auto"},
                    }
                ],
            },
        },
    )
    simulator.queries[query.id] = query
    wired = settings.model_copy(
        update={
            "auto_secret": SecretStr(secret),
            "elfa_api_key": SecretStr(DEMO_API_KEY),
            "elfa_base_url": f"http://127.0.0.1:{sim_sock.getsockname()[1]}/v2/auto",
            "stream_queries": query.id,
            "elfa_requests_per_minute": 600.0,
        }
    )

    async def fire(_: int) -> None:
        async def triggers() -> None:
            await asyncio.sleep(1.0)  # let the subscriber connect
            for n in range(count):
                execution = simulator.trigger(query)
                log.info("demo.trigger", n=n + 1, of=count, execution_id=execution["id"])
                await asyncio.sleep(1.0)
            log.info("demo.done", hint="see them with: autorunner events list; stop with Ctrl-C")

        asyncio.get_running_loop().create_task(triggers())

    sim_stop = asyncio.Event()
    sim_task = asyncio.create_task(
        serving.serve_app(
            simulator.app, "127.0.0.1", 0, name="simulator", sock=sim_sock, stop=sim_stop
        )
    )
    try:
        await serving.serve(wired, on_started=fire, sock=runner_sock)
    finally:
        sim_stop.set()
        await sim_task
