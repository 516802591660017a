"""``autorunner serve --demo N``: the runner and a simulated Elfa Auto in one process.

The simulator gets a query whose webhook points at this runner, the runner subscribes to that
query's stream, and N triggers fire one a second — so a newcomer watches each one arrive by
webhook and by SSE (one run each, the other copy counted as a duplicate), get decided, and
notified. Every hop is real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
from pathlib import Path

import httpx2
import structlog
from pydantic import SecretStr

from autorunner import serving
from autorunner.config import Settings
from autorunner.sim.api import SimQuery
from autorunner.sim.simulator import SimConfig, Simulator

log = structlog.get_logger("autorunner.sim.demo")

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
            "description": "BTC crossed the demo threshold",
            "query": {
                "conditions": {
                    "AND": [
                        {
                            "source": "price",
                            "method": "current",
                            "args": {"symbol": "BTC"},
                            "operator": ">",
                            "value": 0,
                        }
                    ]
                },
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

    async def fire(port: int) -> None:
        async def triggers() -> None:
            await asyncio.sleep(1.0)  # let the subscriber connect
            for n in range(count):
                execution = simulator.trigger(query)
                log.info("demo.trigger", n=n + 1, of=count, execution_id=execution["id"])
                await asyncio.sleep(1.0)
            runs, duplicates = await _finished(f"http://127.0.0.1:{port}/metrics", count)
            log.info(
                "demo.summary",
                summary=f"{count} triggers, {runs} runs, {duplicates} duplicates recognised",
                hint=f"see them with: {command()} events list; stop with Ctrl-C",
            )

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


def command() -> str:
    """How to run this same ``autorunner`` from the current folder (``./dev demo`` runs the
    one in ``.venv``, which is not on the PATH)."""
    exe = Path(sys.argv[0]).resolve()
    try:  # inside this folder (./dev demo: .venv/bin/autorunner): the path from here
        return str(exe.relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    found = shutil.which("autorunner")
    return "autorunner" if found and Path(found).resolve() == exe else str(exe)


async def _finished(metrics_url: str, count: int, *, within: float = 30.0) -> tuple[int, int]:
    """Runs done and duplicates recognised, read from the runner's own ``/metrics`` once every
    trigger has run (or ``within`` seconds have passed)."""
    runs = duplicates = 0
    async with httpx2.AsyncClient(timeout=5) as http:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            text = (await http.get(metrics_url)).text
            runs = int(_sample(text, 'autorunner_jobs_processed_total{outcome="done"}'))
            duplicates = int(
                sum(
                    _sample(text, f'autorunner_events_duplicate_total{{channel="{c}"}}')
                    for c in ("webhook", "sse", "poll")
                )
            )
            if runs >= count:
                break
            await asyncio.sleep(0.2)
    return runs, duplicates


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
