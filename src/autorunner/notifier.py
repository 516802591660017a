"""The built-in alert notifier: incidents reach a person without Prometheus or Alertmanager.

Every ``interval`` seconds the notifier reads the runner's health (the queue's lag, the store's
dead letters, unknown effects, failed effects by adapter, the kill switch, the streams' state,
this process's ``503`` answers, and whether the store and queue answer at all), asks ``Watch``
what is firing, and sends one message when an incident starts and one when it ends — never a
repeat while it stays firing — to each configured target: a Telegram chat and/or a webhook
signed per Standard Webhooks.

Many processes may run it; one leads (a lease in the store, renewed every tick) and the others
stand by. The firing incidents are kept in the store too, so a new leader after a restart or a
takeover does not announce again what was already announced. A message a target did not take is
tried again on the next tick (a webhook's ``webhook-id`` is the same each time, so a receiver can
drop a repeat); the store being down does not stop the message saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx2
import orjson
import structlog

from autorunner import signatures
from autorunner.alerts import Health, Watch
from autorunner.clock import Clock, sleep_unless, system_clock
from autorunner.config import Settings
from autorunner.errors import Unavailable
from autorunner.queue.base import Queue
from autorunner.store.base import Audit, Flags

log = structlog.get_logger("autorunner.notifier")

LEASE = "notifier"
STATE_FLAG = "alerts.firing"
STREAM_FLAG = "stream.down:"
"""``stream.down:<query id or *>`` = JSON ``{"since": t, "reason": …}`` while a stream is down."""
MAX_PENDING = 200
MAX_TRIES = 20
"""Ticks a message is tried on before it is dropped (a chat that no longer exists, say)."""
GROWTH = ("dead_letters",)
"""Incidents measured as growth: a new leader does not resolve them before a whole window."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    """One message: an incident ``firing`` or ``resolved``."""

    key: str
    state: Literal["firing", "resolved"]
    summary: str
    since: float
    at: float

    @property
    def text(self) -> str:
        if self.state == "firing":
            return f"🔴 autorunner: {self.summary}"
        return f"✅ autorunner resolved after {_lasted(self.at - self.since)}: {self.summary}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": f"alert.{self.state}",
            "alert": self.key,
            "summary": self.summary,
            "since": self.since,
            "at": self.at,
            "text": self.text,
        }


class Target(Protocol):
    """Where alerts go; ``send`` raises on failure (the alert is tried again later)."""

    name: str

    async def send(self, alert: Alert) -> None: ...


class TelegramTarget:
    """``sendMessage`` to one chat through the Bot API."""

    name = "telegram"

    def __init__(self, http: httpx2.AsyncClient, *, api: str, token: str, chat: str) -> None:
        self._http, self._url, self._chat = http, f"{api}/bot{token}/sendMessage", chat

    async def send(self, alert: Alert) -> None:
        reply = await self._http.post(self._url, json={"chat_id": self._chat, "text": alert.text})
        if reply.status_code != 200:
            raise RuntimeError(f"Telegram answered {reply.status_code}")


class WebhookTarget:
    """A JSON POST signed per Standard Webhooks (``webhook-id`` stays the same on a retry)."""

    name = "webhook"

    def __init__(self, http: httpx2.AsyncClient, *, url: str, secret: str) -> None:
        self._http, self._url, self._secret = http, url, secret

    async def send(self, alert: Alert) -> None:
        body = orjson.dumps(alert.to_dict())
        msg_id = f"alert_{alert.key}_{alert.state}_{alert.since:.3f}"
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": stamp,
            "webhook-signature": signatures.sign_standard(
                self._secret, msg_id=msg_id, timestamp=stamp, body=body
            ),
        }
        reply = await self._http.post(self._url, content=body, headers=headers)
        if not 200 <= reply.status_code < 300:
            raise RuntimeError(f"the alert webhook answered {reply.status_code}")


class Notifier:
    """See the module docstring; ``tick`` does one round (tests call it with a fake clock)."""

    def __init__(
        self,
        *,
        name: str,
        store: Flags,
        audit: Audit,
        queue: Queue,
        watch: Watch,
        targets: Sequence[Target],
        refused: Callable[[], int] = lambda: 0,
        streams: Sequence[str] = (),
        interval: float = 15.0,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self._store, self._audit, self._queue = store, audit, queue
        self._watch = watch
        self._targets = targets
        self._refused = refused
        self._streams = streams
        self.interval = interval
        self._clock = clock
        self.leading = False
        self._warm_until = 0.0
        self._firing: dict[str, tuple[float, str]] = {}
        """The shared incidents announced, as last read from the store (and changed since)."""
        self._unsaved: dict[str, tuple[float, str] | None] = {}
        """Changes to ``_firing`` the store has not taken yet (``None``: resolved)."""
        self._local: dict[str, tuple[float, str]] = {}
        """This process's own incidents (its webhook ``503``s): never shared, never led."""
        self._pending: list[tuple[Target, Alert, int]] = []
        self._unreachable: dict[str, tuple[float, str]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # a bug here must not stop alerting for good
                log.exception("notifier.failed")
            if await sleep_unless(stop, self.interval):
                return

    async def tick(self) -> list[Alert]:
        """Read, compare, send; returns the alerts this tick produced."""
        now = self._clock()
        if self._unsaved:
            await self._keep()  # what an outage kept from the store, before anyone reads it
        refusing = self._watch.refusing(now, self._refused())
        alerts = _changes(
            self._local, {} if refusing is None else {"ingress_refusing": refusing}, now
        )
        if await self._lead(now):
            alerts += await self._shared(now)
        elif self._pending:
            # Standing by: what this process had not delivered is the leader's to tell now.
            log.warning("alert.dropped", reason="standby", alerts=len(self._pending))
            self._pending = [p for p in self._pending if p[1].key in self._local]
        for alert in alerts:
            if alert.state == "firing":
                log.warning("alert.firing", alert=alert.key, summary=alert.summary)
            else:
                log.info("alert.resolved", alert=alert.key, summary=alert.summary)
        self._pending += [(target, alert, 0) for alert in alerts for target in self._targets]
        await self._deliver()
        return alerts

    async def _lead(self, now: float) -> bool:
        was = self.leading
        # With the store down nobody can take the lease: the leader goes on (to say so).
        with contextlib.suppress(Unavailable):
            self.leading = await self._store.lead(
                LEASE, owner=self.name, ttl=max(3 * self.interval, 10.0)
            )
        if self.leading and not was:
            # A new leader measures growth afresh, and resolves none of it for one window.
            self._watch.reset()
            self._warm_until = now + self._watch.window
        return self.leading

    async def _shared(self, now: float) -> list[Alert]:
        health = await self._health(now)
        kept = await self._kept()
        if kept is not None:
            self._firing = kept
        for key, value in self._unsaved.items():
            if value is None:
                self._firing.pop(key, None)
            else:
                self._firing[key] = value
        found = self._watch.incidents(health)
        if now < self._warm_until:
            for key in GROWTH:
                if key in self._firing and key not in found:
                    found[key] = self._firing[key][1]
        alerts = _changes(self._firing, found, now)
        if alerts:
            self._unsaved.update(
                {a.key: (a.since, a.summary) if a.state == "firing" else None for a in alerts}
            )
            await self._keep()
        return alerts

    async def _health(self, now: float) -> Health:
        store: dict[str, Any] = {}
        lag = None
        try:
            stats = await self._audit.stats(done=False)
            effects = await self._audit.list_effects(limit=500, status="failed")
            store = {
                "dead": stats.counts.get("dead", 0),
                "unknown_effects": stats.unknown_effects,
                "paused": await self._store.get_flag("paused"),
                "failing": _failing(effects, since=now - self._watch.window),
                "streams_down": await self._streams_down(),
            }
            self._unreachable.pop("store", None)
        except Unavailable as exc:
            self._unreachable.setdefault("store", (now, str(exc) or "unavailable"))
        try:
            lag = (await self._queue.stats()).oldest_ready_age or 0.0
            self._unreachable.pop("queue", None)
        except Unavailable as exc:
            self._unreachable.setdefault("queue", (now, str(exc) or "unavailable"))
        return Health(at=now, lag=lag, unreachable=dict(self._unreachable), **store)

    async def _streams_down(self) -> dict[str, tuple[float, str]]:
        down = {}
        for name in self._streams:
            value = await self._store.get_flag(STREAM_FLAG + name)
            if value is not None:
                state = orjson.loads(value)
                down[name] = (float(state["since"]), str(state["reason"]))
        return down

    async def _kept(self) -> dict[str, tuple[float, str]] | None:
        """The announced incidents the store keeps; ``None`` when it cannot say."""
        try:
            value = await self._store.get_flag(STATE_FLAG)
        except Unavailable:
            return None
        kept = orjson.loads(value) if value else {}
        return {key: (float(since), str(summary)) for key, (since, summary) in kept.items()}

    async def _keep(self) -> None:
        """Apply the unsaved changes to what the store keeps (another leader may have written
        since: only this process's changes are applied)."""
        kept = await self._kept()
        if kept is None:
            return
        for key, value in self._unsaved.items():
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = value
        try:
            await self._store.set_flag(STATE_FLAG, orjson.dumps(kept).decode())
        except Unavailable as exc:
            log.warning("notifier.state_not_kept", error=str(exc))
            return
        self._unsaved.clear()

    async def _deliver(self) -> None:
        """Send what waits, oldest first; a target that fails is left until the next tick."""
        waiting, self._pending = self._pending, []
        failed: set[str] = set()
        for target, alert, tries in waiting:
            if target.name in failed:
                self._pending.append((target, alert, tries))
                continue
            try:
                await target.send(alert)
            except Exception as exc:
                failed.add(target.name)
                if tries + 1 >= MAX_TRIES:
                    log.error(  # noqa: TRY400 - the error says it; no traceback wanted
                        "alert.dropped", target=target.name, alert=alert.key, error=str(exc)
                    )
                    continue
                log.warning("alert.not_sent", target=target.name, alert=alert.key, error=str(exc))
                self._pending.append((target, alert, tries + 1))
        del self._pending[:-MAX_PENDING]


def _changes(
    firing: dict[str, tuple[float, str]], found: dict[str, str], now: float
) -> list[Alert]:
    """The alerts that move ``firing`` (updated in place) to ``found``."""
    alerts = [
        Alert(key=key, state="firing", summary=summary, since=now, at=now)
        for key, summary in found.items()
        if key not in firing
    ]
    alerts += [
        Alert(key=key, state="resolved", summary=summary, since=since, at=now)
        for key, (since, summary) in firing.items()
        if key not in found
    ]
    for alert in alerts:
        if alert.state == "firing":
            firing[alert.key] = (now, alert.summary)
        else:
            del firing[alert.key]
    return alerts


class StreamState:
    """What a subscriber reports about its stream, kept in the store's flags for the notifier
    of whichever process leads: down (since when, why) or up."""

    def __init__(self, flags: Flags, name: str, clock: Clock = system_clock) -> None:
        self._flags, self._flag, self._clock = flags, STREAM_FLAG + name, clock
        self._down: bool | None = None
        """Unknown at first: the first report is written, clearing what an earlier process
        left."""

    async def report(self, reason: str | None) -> None:
        """``None``: the stream is up (or ended as asked); else it is down for ``reason``."""
        down = reason is not None
        if down == self._down:
            return
        value = orjson.dumps({"since": self._clock(), "reason": reason}).decode() if down else None
        try:
            await self._flags.set_flag(self._flag, value)
            self._down = down
        except Unavailable as exc:
            log.warning("stream.state_not_kept", error=str(exc))


Reporter = Callable[[str | None], Awaitable[None]]


def targets(settings: Settings, http: httpx2.AsyncClient) -> list[Target]:
    """The alert targets ``settings`` configure (none: the notifier does not run)."""
    found: list[Target] = []
    if settings.alert_telegram_chat and settings.telegram_bot_token is not None:
        found.append(
            TelegramTarget(
                http,
                api=settings.telegram_api_url.rstrip("/"),
                token=settings.telegram_bot_token.get_secret_value(),
                chat=settings.alert_telegram_chat,
            )
        )
    if settings.alert_webhook_url and settings.alert_webhook_secret is not None:
        found.append(
            WebhookTarget(
                http,
                url=settings.alert_webhook_url,
                secret=settings.alert_webhook_secret.get_secret_value(),
            )
        )
    return found


def stream_names(settings: Settings) -> list[str]:
    """The name each configured stream's state is kept under (``*`` for the account's)."""
    return [query_id or "*" for query_id in settings.streams]


def _failing(effects: list[dict[str, Any]], *, since: float) -> dict[str, int]:
    found: dict[str, int] = {}
    for effect in effects:
        if float(effect.get("updated_at") or 0.0) >= since:
            found[effect["kind"]] = found.get(effect["kind"], 0) + 1
    return found


def _lasted(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m {seconds % 60}s"
