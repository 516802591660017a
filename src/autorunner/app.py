"""The composition root: settings → pipeline, worker, adapters and ASGI app over open backends.

With ``backends`` (which opens the store and queue), the only modules that name concrete
backends and adapters.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx2
import orjson
import structlog
from pydantic import SecretStr

from autorunner.adapters import CONFIGURED_BY, build_adapters
from autorunner.adapters.base import Adapter, valuers
from autorunner.alerts import Watch
from autorunner.approval_desk import ApprovalDesk, webhook_endpoint
from autorunner.auto_client import AutoClient, AutoCredentials
from autorunner.backends import Backends
from autorunner.clock import Clock, system_clock
from autorunner.config import Settings, console_enabled
from autorunner.context import AutoContext, NoContext
from autorunner.deciding import budgeted, check_deciders, deciders
from autorunner.errors import ConfigError, Unavailable
from autorunner.ingest import Ingestor
from autorunner.ingress import WebhookApp, WebhookConfig
from autorunner.metrics import Metrics
from autorunner.notifier import Notifier, StreamState, stream_names, targets
from autorunner.notional import Malformed, Valuer
from autorunner.pipeline import Pipeline
from autorunner.policy import Policy
from autorunner.policy_file import load_policy, policy_from_settings
from autorunner.probes import build_app
from autorunner.queue.base import Queue
from autorunner.reconcile import Reconciler
from autorunner.retry import RetryPolicy
from autorunner.spacing import Spacer
from autorunner.subscriber import Subscriber, SubscriberConfig
from autorunner.tracing import OFF, OtelTracing, Tracing, from_environment, trace_requests
from autorunner.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from autorunner.console import Console
    from autorunner.console.auth import Tokens

log = structlog.get_logger("autorunner.app")


Role = Literal["serve", "ingress", "worker", "console"]
"""What a process runs: everything (``serve``), only the HTTP ingress and streams (``ingress``),
or only workers and the sweeper, with HTTP for probes and metrics (``worker``)."""


@dataclass(kw_only=True)
class Runtime:
    """Everything one process runs, built from settings."""

    settings: Settings
    backends: Backends
    metrics: Metrics
    worker: Worker
    app: Any
    clock: Clock
    auto: AutoClient | None = None
    http: httpx2.AsyncClient | None = None
    ingestor: Ingestor | None = None
    pipeline: Pipeline | None = None
    role: Role = "serve"
    tracing: Tracing = OFF
    notifier: Notifier | None = None
    console: Console | None = None
    """The console, when this process serves it."""
    desk: ApprovalDesk | None = None
    """The approvals' Telegram desk, when a bot token is set and the policy names approvers."""

    @property
    def console_tokens(self) -> Tokens | None:
        return None if self.console is None else self.console.tokens

    @property
    def runs_workers(self) -> bool:
        return self.role in ("serve", "worker") and self.settings.workers_enabled

    @property
    def runs_streams(self) -> bool:
        return self.role in ("serve", "ingress") and self.auto is not None

    def reload_policy(self) -> None:
        """Re-read ``RUNNER_POLICY`` (SIGHUP); a bad file is logged and the running policy kept."""
        path = self.settings.runner_policy
        if not path or self.pipeline is None:
            log.info("policy.reload_skipped", reason="RUNNER_POLICY is not set")
            return
        try:
            policy = load_policy(path)
        except ConfigError as exc:
            log.error("policy.reload_failed", error=str(exc), kept=self.pipeline.policy.hash)  # noqa: TRY400
            return
        self.pipeline.policy = policy
        log.info("policy.reloaded", policy_hash=policy.hash, routes=len(policy.routes))
        for warning in policy_warnings(policy, self.pipeline.adapters):
            log.warning("policy.warning", warning=warning)

    async def aclose(self) -> None:
        """Close the HTTP client and the backends; send the spans still buffered."""
        try:
            if self.http is not None:
                await self.http.aclose()
            await self.backends.close()
        finally:
            # A blocking flush (with the exporter's retries): off the event loop.
            await asyncio.to_thread(self.tracing.shutdown)


def auto_credentials(settings: Settings) -> AutoCredentials | None:
    """API-key mode when ``ELFA_API_KEY`` is set, x402 when only ``ELFA_AGENT_SECRET`` is."""

    def value(secret: SecretStr | None) -> str | None:
        return secret.get_secret_value() if secret is not None else None

    if settings.elfa_api_key is None and settings.elfa_agent_secret is None:
        return None
    return AutoCredentials(
        mode="api_key" if settings.elfa_api_key is not None else "x402",
        api_key=value(settings.elfa_api_key),
        agent_secret=value(settings.elfa_agent_secret),
        hmac_secret=value(settings.elfa_hmac_secret),
        payment_header=value(settings.elfa_payment_header),
    )


def build_auto_client(settings: Settings, http: httpx2.AsyncClient) -> AutoClient | None:
    """The Elfa API client, or ``None`` when no Elfa credential is configured."""
    credentials = auto_credentials(settings)
    if credentials is None:
        return None
    return AutoClient(
        base_url=settings.elfa_base_url,
        credentials=credentials,
        http=http,
        requests_per_minute=settings.elfa_requests_per_minute,
    )


def http_client(tracing: Tracing = OFF) -> httpx2.AsyncClient:
    """The one outgoing HTTP client of a process: explicit limits and timeouts; with tracing
    on, each request is a client span and carries ``traceparent``."""
    client = httpx2.AsyncClient(
        timeout=httpx2.Timeout(10.0),
        limits=httpx2.Limits(max_connections=50, max_keepalive_connections=20),
    )
    if isinstance(tracing, OtelTracing):
        trace_requests(tracing, client)
    return client


def shared_spacer(settings: Settings, queue: Queue | None) -> Spacer | None:
    """Telegram's limits hold per bot, whichever worker sends: on a Redis queue (cloud mode)
    every process spaces its sends through Redis, with the queue's client; otherwise the
    adapter spaces them itself."""
    if settings.runner_mode != "cloud":
        return None
    from autorunner.queue.redis import RedisQueue  # noqa: PLC0415 - cloud mode only
    from autorunner.spacing.redis import RedisSpacer  # noqa: PLC0415

    if not isinstance(queue, RedisQueue):
        return None
    return RedisSpacer(queue.client, prefix=f"{{{queue.name}}}:spacing")


async def valuation(settings: Settings) -> dict[str, Valuer]:
    """How each configured adapter kind's notional is read (``policy.check``), for the
    commands that decide without running anything (replay, rerun's preview)."""
    async with http_client() as http:
        return valuers(build_adapters(settings, http))


def policy_warnings(policy: Policy, adapters: Mapping[str, Adapter]) -> list[str]:
    """What a policy's author should hear at start-up: the loader's warnings, and each allowed
    kind this configuration has no adapter for (its actions will be denied)."""
    found = list(policy.warnings)
    for route in (*policy.routes, policy.default):
        found += [
            f"route {route.name!r} allows {kind!r}, but no {kind} adapter is configured"
            f" ({CONFIGURED_BY[kind]}): its actions will be denied"
            for kind in route.allowed_actions
            if kind not in adapters
        ]
        for n, rule in enumerate(route.rules, start=1):
            for action in rule.actions:
                if action.kind not in adapters or "$" in orjson.dumps(action.params).decode():
                    continue  # no adapter (said above), or filled in per event
                notional = adapters[action.kind].notional(action.params)
                if isinstance(notional, Malformed):
                    found.append(
                        f"route {route.name!r} rule {n} action {action.step!r} is always denied:"
                        f" {notional.reason}"
                    )
    return found


def policy_for(settings: Settings, path: str | None = None) -> Policy:
    """``path``, else ``RUNNER_POLICY``, else the built-in policy."""
    return policy_from_settings(
        path or settings.runner_policy,
        max_execution_seconds=settings.job_timeout,
        max_attempts=settings.max_attempts,
    )


def build_runtime(
    settings: Settings,
    backends: Backends,
    *,
    adapters: dict[str, Adapter] | None = None,
    clock: Clock = system_clock,
    role: Role = "serve",
    tracing: Tracing | None = None,
) -> Runtime:
    """Wire the pipeline, worker and ASGI app over open backends; ``tracing`` defaults to what
    the process environment asks for (``tracing.from_environment``)."""
    metrics = Metrics()
    name = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
    if tracing is None:
        tracing = from_environment(instance=name, role=role)
    http = http_client(tracing)
    auto = build_auto_client(settings, http)
    chosen = (
        adapters
        if adapters is not None
        else build_adapters(settings, http, spacer=shared_spacer(settings, backends.queue))
    )
    policy = policy_for(settings)
    store, queue = backends.store, backends.queue
    available = budgeted(deciders(settings, http, auto, tracing), settings, store, metrics, clock)
    check_deciders(policy, available)
    for warning in policy_warnings(policy, chosen):
        log.warning("policy.warning", warning=warning)
    pipeline = Pipeline(
        ledger=store,
        flags=store,
        approvals=store,
        policy=policy,
        deciders=available,
        pause_check_seconds=settings.pause_check_seconds,
        adapters=chosen,
        context=(
            AutoContext(auto, cache_seconds=settings.context_cache_seconds)
            if auto is not None
            else NoContext()
        ),
        clock=clock,
        tracing=tracing,
    )
    worker = Worker(
        store=store,
        journal=store,
        queue=queue,
        outbox=backends.outbox,
        pipeline=pipeline,
        config=WorkerConfig(
            name=name,
            concurrency=settings.worker_concurrency,
            lease=settings.lease_seconds,
            grace=settings.shutdown_grace,
            pause_poll=max(settings.pause_check_seconds, 0.2),
            role=role,
            retry=RetryPolicy(
                max_attempts=settings.max_attempts,
                base_delay=settings.retry_base_delay,
                max_delay=settings.retry_max_delay,
            ),
        ),
        metrics=metrics,
        clock=clock,
        tracing=tracing,
    )
    ingestor = Ingestor(outbox=backends.outbox, metrics=metrics, tracing=tracing)
    webhook = WebhookApp(
        ingestor=ingestor,
        store=store,
        config=WebhookConfig(
            secrets=settings.webhook_secrets,
            tolerance=settings.auto_signature_tolerance,
            allow_unsigned=settings.auto_allow_unsigned,
            max_body=settings.max_body_bytes,
            store_timeout=settings.store_timeout,
        ),
        metrics=metrics,
        clock=clock,
        tracing=tracing,
    )
    runtime = Runtime(
        settings=settings,
        backends=backends,
        metrics=metrics,
        worker=worker,
        app=None,
        clock=clock,
        auto=auto,
        http=http,
        ingestor=ingestor,
        pipeline=pipeline,
        role=role,
        tracing=tracing,
        notifier=build_notifier(settings, backends, metrics, http, name=name, clock=clock),
    )
    runtime.desk = build_desk(
        settings, backends, lambda: pipeline.policy, http, name=name, clock=clock
    )
    gated = [r.name for r in (*policy.routes, policy.default) if r.approval is not None]
    if gated and runtime.desk is None and role in ("serve", "worker"):
        log.warning(
            "approvals.no_chat",
            routes=gated,
            detail="TELEGRAM_BOT_TOKEN is not set or the policy names no approvers: approvals"
            " reach no chat; answer them with `autorunner approvals` or the console",
        )
    console = None
    if role in ("serve", "console") and console_enabled(settings, host=settings.host):
        # Imported here: an ingress or a worker serves no console and need not load it (its
        # templates, forms and sessions: ≈ 2.4 MB of an idle ingress's memory).
        from autorunner.console import Console, build_console, tokens_for  # noqa: PLC0415

        runtime.console = Console(
            backends=backends,
            settings=settings,
            tokens=tokens_for(settings),
            policy=lambda: pipeline.policy,
            deciders=available,
            valuers=valuers(chosen),
        )
        console = build_console(runtime.console)
    runtime.app = build_app(
        webhook=webhook if role in ("serve", "ingress") else None,
        console=console,
        metrics=metrics,
        audit=store,
        queue=queue,
        ready=_readiness(runtime),
        telegram=(
            webhook_endpoint(runtime.desk, settings.telegram_webhook_secret.get_secret_value())
            if runtime.desk is not None
            and settings.telegram_webhook_secret is not None
            and role in ("serve", "ingress")
            else None
        ),
    )
    return runtime


def build_desk(
    settings: Settings,
    backends: Backends,
    policy: Callable[[], Policy],
    http: httpx2.AsyncClient,
    *,
    name: str,
    clock: Clock = system_clock,
) -> ApprovalDesk | None:
    """The approvals' Telegram desk, when ``TELEGRAM_BOT_TOKEN`` is set and the policy has
    approver groups; it polls ``getUpdates`` unless ``TELEGRAM_WEBHOOK_SECRET`` is set."""
    if settings.telegram_bot_token is None or not policy().approvers:
        return None
    return ApprovalDesk(
        backends,
        policy,
        http,
        api=settings.telegram_api_url,
        token=settings.telegram_bot_token.get_secret_value(),
        name=name,
        poll=settings.telegram_webhook_secret is None,
        poll_seconds=settings.approvals_poll_seconds,
        alone=settings.runner_mode == "local",
        clock=clock,
    )


def build_notifier(
    settings: Settings,
    backends: Backends,
    metrics: Metrics,
    http: httpx2.AsyncClient,
    *,
    name: str,
    clock: Clock = system_clock,
) -> Notifier | None:
    """The alert notifier, when ``ALERT_TELEGRAM_CHAT`` or ``ALERT_WEBHOOK_URL`` is set."""
    chosen = targets(settings, http)
    if not chosen:
        return None
    return Notifier(
        name=name,
        store=backends.store,
        audit=backends.store,
        queue=backends.queue,
        watch=Watch(
            lag_threshold=settings.lag_threshold,
            window=settings.alert_window,
            hold_for=settings.alert_for,
        ),
        targets=chosen,
        refused=lambda: int(
            metrics.registry.get_sample_value("autorunner_store_unavailable_total") or 0
        ),
        streams=stream_names(settings),
        interval=settings.alert_interval,
        clock=clock,
    )


def _readiness(runtime: Runtime) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Ready when the store and queue answer and (where workers run) the worker's heartbeat is
    fresh. Lag past ``LAG_THRESHOLD`` is reported (``lagging``), never a reason to be unready:
    taking a worker out of service during a backlog would only deepen it (lag is an alert and
    an autoscaling signal). A cloud ingress needs only the store: it acknowledges what the store
    holds even while the queue is down (the sweeper queues it later)."""

    async def ready() -> dict[str, Any]:
        settings = runtime.settings
        await runtime.backends.store.ping()
        checks: dict[str, Any] = {"role": runtime.role, "store": "ok"}
        try:
            stats = await runtime.backends.queue.stats()
        except Unavailable as exc:
            if runtime.role != "ingress":
                raise
            return {"ok": True, **checks, "queue": f"unavailable: {exc}"}
        lag = stats.oldest_ready_age or 0.0
        checks |= {
            "queue": "ok",
            "lag_seconds": round(lag, 3),
            "lag_threshold_seconds": settings.lag_threshold,
            "lagging": lag > settings.lag_threshold,
        }
        if runtime.role == "ingress":
            return {"ok": True, **checks}
        ok = True
        if runtime.runs_workers:
            heartbeat = runtime.worker.last_heartbeat
            age = None if heartbeat is None else runtime.clock() - heartbeat
            checks["worker_heartbeat_age"] = None if age is None else round(age, 3)
            ok = ok and age is not None and age <= max(3 * settings.lease_seconds, 5.0)
        return {"ok": ok, **checks}

    return ready


def subscriber(runtime: Runtime, query_id: str | None) -> Subscriber:
    """A subscriber for one stream, over the runtime's Elfa client and ingest path; its state
    (up, or down since when) is kept in the store for the notifier (``stream_state``)."""
    if runtime.auto is None or runtime.ingestor is None:
        raise ConfigError("streaming needs ELFA_API_KEY or ELFA_AGENT_SECRET")
    settings = runtime.settings
    return Subscriber(
        client=runtime.auto,
        ingestor=runtime.ingestor,
        reconciler=Reconciler(client=runtime.auto, ingestor=runtime.ingestor),
        metrics=runtime.metrics,
        query_id=query_id,
        config=SubscriberConfig(
            keepalive=settings.sse_keepalive_seconds,
            silence_factor=settings.sse_silence_factor,
            reconcile_interval=settings.reconcile_interval,
        ),
        report=stream_state(runtime, query_id).report,
    )


def stream_state(runtime: Runtime, query_id: str | None) -> StreamState:
    """Where the stream of ``query_id`` (``None``: the account's) reports up or down."""
    return StreamState(runtime.backends.store, query_id or "*", clock=runtime.clock)
