"""Running processes: ``serve`` (ingress + workers + subscribers + sweeper), a plain ASGI server
(the simulator), the workers' and subscribers' lifecycles, and the listening socket.

The objects come from the composition root (``app``); this module only starts, signals and
stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import structlog
import uvicorn

from autorunner.app import Role, Runtime, build_runtime, stream_state, subscriber
from autorunner.backends import open_backends_patiently
from autorunner.config import Settings, console_enabled
from autorunner.errors import AutoError, ConfigError
from autorunner.http_limits import HttpLimits, Refusal, limited_protocol
from autorunner.metrics import Metrics
from autorunner.sweeper import run_sweeper
from autorunner.tallies import Tallies

log = structlog.get_logger("autorunner.serving")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running(runtime: Runtime, stop: asyncio.Event) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Start the worker and the sweeper (when enabled); stop and drain them on exit."""
    settings = runtime.settings
    tasks: list[asyncio.Task[Any]] = []
    if runtime.runs_workers:
        tasks.append(asyncio.create_task(runtime.worker.run(stop), name="worker"))
        tasks.append(
            asyncio.create_task(
                run_sweeper(
                    runtime.backends.store,
                    runtime.backends.queue,
                    stop,
                    interval=settings.sweep_interval,
                    after=settings.sweep_after,
                    metrics=runtime.metrics,
                    clock=runtime.clock,
                ),
                name="sweeper",
            )
        )
    if runtime.notifier is not None:
        tasks.append(asyncio.create_task(runtime.notifier.run(stop), name="notifier"))
    if runtime.desk is not None and runtime.role in ("serve", "worker"):
        tasks.append(asyncio.create_task(runtime.desk.run(stop), name="approval-desk"))
    if runtime.role != "console":
        tallies = Tallies(runtime.backends.store, runtime.metrics, clock=runtime.clock)
        tasks.append(
            asyncio.create_task(tallies.run(stop, every=settings.tally_interval), name="tallies")
        )
    tasks += [
        asyncio.create_task(follow(runtime, query_id, stop), name=f"stream-{query_id or 'account'}")
        for query_id in (settings.streams if runtime.runs_streams else [])
    ]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def follow(runtime: Runtime, query_id: str | None, stop: asyncio.Event) -> AutoError | None:
    """Run one subscriber; a refusal (401/403/404) ends it with one error line, not the process,
    and is returned so a caller that exists only to stream can fail with it."""
    try:
        ending = await subscriber(runtime, query_id).run(stop)
    except AutoError as exc:
        log.error("stream.refused", query_id=query_id, error=str(exc))  # noqa: TRY400 - the message says it all
        await stream_state(runtime, query_id).report(f"refused: {exc}")
        return exc
    log.info("stream.finished", query_id=query_id, ending=ending)
    return None


async def serve(
    settings: Settings,
    *,
    role: Role = "serve",
    on_started: Callable[[int], Awaitable[None]] | None = None,
    sock: socket.socket | None = None,
    http: type[asyncio.Protocol] | None = None,
) -> None:
    """``autorunner serve`` (ingress + workers + sweeper in one process), ``ingress`` or
    ``worker`` (see ``app.Role``), until SIGINT/SIGTERM. ``http`` replaces the HTTP protocol
    that enforces the settings' limits (the benchmark measures their cost with uvicorn's own)."""
    if role != "serve" and settings.runner_mode != "cloud":
        raise ConfigError(
            f"`autorunner {role}` is for cloud mode: set RUNNER_MODE=cloud, "
            "QUEUE_URL=redis://…, nats://… or sqs://… and DATABASE_URL=postgresql://… (or run"
            " `autorunner serve`)"
        )
    secrets = settings.webhook_secrets
    if role == "console" and not console_enabled(settings, host=settings.host):
        raise ConfigError(
            f"the console on {settings.host} (not loopback) needs CONSOLE_TOKEN, and CONSOLE"
            " not off"
        )
    if (
        role in ("serve", "ingress")
        and not settings.auto_allow_unsigned
        and not (secrets.elfa_keys or secrets.standard_keys)
    ):
        raise ConfigError(
            f"AUTO_SECRET is {'empty' if settings.auto_secret is not None else 'not set'}, so every signed"
            " webhook would be refused: set it (comma-separated for rotation) or set"
            " AUTO_ALLOW_UNSIGNED=true"
        )
    sock = sock or listen(settings.host, settings.port)
    port = int(sock.getsockname()[1])
    backends = await open_backends_patiently(settings)
    runtime = build_runtime(settings, backends, role=role)
    stop = asyncio.Event()
    config = uvicorn.Config(
        runtime.app,
        log_config=None,
        access_log=False,
        lifespan="off",
        loop="none",
        http=http or limited_protocol(http_limits(settings), refusals(runtime.metrics)),
        ws="none",
        proxy_headers=False,  # no client address is used; skip the middleware
        server_header=False,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        server.should_exit = True
        stop.set()
        if runtime.console is not None:
            runtime.console.stopping.set()  # live streams end; shutdown waits on none
        # Last: a log line that cannot be written (its pipe closed) must not keep us running.
        with contextlib.suppress(OSError):
            log.info("serve.stopping")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    loop.add_signal_handler(signal.SIGHUP, runtime.reload_policy)
    try:
        async with running(runtime, stop):
            serving = asyncio.create_task(server.serve(sockets=[sock]), name="http")
            while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes only a flag
                await asyncio.sleep(0.01)
            if server.started:
                # Everything built so far lives for the whole process: keep it out of the
                # collector's scans, which otherwise show up as tail latency on webhooks.
                gc.freeze()
                log.info(
                    "serve.started",
                    role=role,
                    host=settings.host,
                    port=port,
                    store=_safe_url(settings.store_url),
                    policy_hash=runtime.pipeline.policy.hash if runtime.pipeline else None,
                )
                _announce_console(runtime, settings.host, port)
                if on_started is not None:
                    await on_started(port)
            await serving
            stop.set()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        sock.close()
        await runtime.aclose()
        log.info("serve.stopped")


def _announce_console(runtime: Runtime, host: str, port: int) -> None:
    """Where the console is; with a token made at start (loopback, no ``CONSOLE_TOKEN``), the
    token too, once: the only way in, as a notebook server prints its own."""
    tokens = runtime.console_tokens
    if tokens is None:
        return
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/console/"
    if tokens.generated:
        log.warning("console.login", url=url, token=tokens.operator, until="this process stops")
    else:
        log.info("console.ready", url=url)


async def serve_app(
    app: Any,
    host: str,
    port: int,
    *,
    name: str,
    tick: tuple[float, Callable[[], None]] | None = None,
    sock: socket.socket | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve a plain ASGI app (the simulator) until ``stop`` is set, or SIGINT/SIGTERM when no
    ``stop`` is given; ``tick`` runs a function every N seconds meanwhile."""
    sock = sock or listen(host, port)
    protocol = limited_protocol(HttpLimits(), refusals(None))
    server = _Server(
        uvicorn.Config(
            app, log_config=None, access_log=False, loop="none", http=protocol, ws="none"
        )
    )
    loop = asyncio.get_running_loop()
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes only a flag
        await asyncio.sleep(0.01)
    log.info(f"{name}.started", host=host, port=int(sock.getsockname()[1]))
    helpers = [asyncio.create_task(_exit_on(stop, server))]
    if tick is not None and tick[0] > 0:
        helpers.append(asyncio.create_task(_every(tick[0], tick[1])))
    try:
        await serving
    finally:
        for helper in helpers:
            helper.cancel()
        if own_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        sock.close()


async def _exit_on(stop: asyncio.Event, server: uvicorn.Server) -> None:
    await stop.wait()
    server.should_exit = True


async def _every(seconds: float, fn: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        fn()


DESCRIPTOR_RESERVE = 128
"""Descriptors kept for everything but HTTP clients: the store and queue pools, the log, Auto."""


def http_limits(settings: Settings) -> HttpLimits:
    """The settings' HTTP limits, with as many connections as the descriptor limit allows:
    the soft limit is raised to the hard one first, then connections are capped below it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    room = (
        soft - DESCRIPTOR_RESERVE
        if soft != resource.RLIM_INFINITY
        else settings.http_max_connections
    )
    connections = max(1, min(settings.http_max_connections, room))
    if connections < settings.http_max_connections:
        log.warning(
            "serve.connections_capped",
            wanted=settings.http_max_connections,
            allowed=connections,
            descriptor_limit=soft,
        )
    return HttpLimits(
        header_timeout=settings.http_header_timeout,
        body_idle_timeout=settings.http_body_idle_timeout,
        body_timeout=settings.http_body_timeout,
        max_header_bytes=settings.http_max_header_bytes,
        max_headers=settings.http_max_headers,
        max_body_bytes=settings.max_body_bytes,
        max_connections=connections,
    )


def refusals(metrics: Metrics | None, every: float = 10.0) -> Refusal:
    """Counts each refused client and logs one line per reason every ``every`` seconds at most
    (a flood of refusals must not become a flood of log lines)."""
    pending: dict[str, int] = {}
    logged: dict[str, float] = {}

    def refused(reason: str) -> None:
        if metrics is not None:
            metrics.http_refused.labels(reason).inc()
        pending[reason] = pending.get(reason, 0) + 1
        now = time.monotonic()
        if now - logged.get(reason, -every) >= every:
            log.warning("http.refused", reason=reason, count=pending.pop(reason))
            logged[reason] = now

    return refused


def listen(host: str, port: int) -> socket.socket:
    """Bind the HTTP socket up front, so a taken port is one clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc} (set HOST/PORT)"
        ) from exc


def _safe_url(url: str) -> str:
    return url.rsplit("@", maxsplit=1)[-1] if "@" in url else url
