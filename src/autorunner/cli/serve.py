"""``serve`` (local mode, everything in one process), ``ingress`` and ``worker`` (cloud mode)."""

from __future__ import annotations

from typing import Annotated

import typer

from autorunner import serving
from autorunner.cli import tools

Port = Annotated[int | None, typer.Option(help="HTTP port (default: PORT or 3000).")]
Host = Annotated[str | None, typer.Option(help="Bind address (default: HOST or 127.0.0.1).")]


def serve(
    port: Port = None,
    host: Host = None,
    demo: Annotated[
        int,
        typer.Option(
            help="Also run a simulated Auto beside the runner and fire this many triggers."
        ),
    ] = 0,
) -> None:
    """Run ingress, workers, stream subscribers and the sweeper in one process (local mode)."""
    settings = tools.settings(port=port, host=host)
    if demo:
        from autorunner.sim.demo import run_demo  # noqa: PLC0415 - only the demo needs the simulator

        tools.serve_forever(run_demo(settings, demo))
    else:
        tools.serve_forever(serving.serve(settings))


def ingress(
    port: Port = None,
    host: Host = None,
) -> None:
    """Cloud mode: webhooks (and STREAM_QUERIES) in, stored in PostgreSQL, queued."""
    settings = tools.settings(port=port, host=host)
    tools.serve_forever(serving.serve(settings, role="ingress"))


def worker(
    port: Annotated[
        int | None, typer.Option(help="Port for /healthz, /readyz, /metrics (default: PORT).")
    ] = None,
    host: Host = None,
) -> None:
    """Cloud mode: workers and the sweeper; run as many replicas as the load needs."""
    settings = tools.settings(port=port, host=host)
    tools.serve_forever(serving.serve(settings, role="worker"))


def console(
    port: Port = None,
    host: Host = None,
) -> None:
    """Cloud mode: the operator console at /console, on the deployment's store and queue."""
    settings = tools.settings(port=port, host=host)
    tools.serve_forever(serving.serve(settings, role="console"))
