"""What is wrong right now: the runner's health, read at one moment, turned into incidents.

Pure and clock-free: ``Watch.incidents`` is given a ``Health`` (what the notifier read from the
store, the queue and this process) and returns the incidents firing at that moment, each a key
and a one-line summary. Keys are stable while the same thing stays wrong, so the notifier sends
one message when an incident starts and one when it ends.

Some incidents need a memory of earlier readings (dead letters that *grow*, a webhook that
*recently* answered ``503``); ``Watch`` keeps those readings for ``window`` seconds. A thing
that may blink (a stream reconnecting, a backend not answering once) fires only after it has
lasted ``hold_for`` seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True, slots=True)
class Health:
    """One reading. ``None`` for what could not be read (a backend that did not answer): the
    incidents that depend on it neither fire nor resolve on this reading."""

    at: float
    lag: float | None = None
    """Seconds the oldest ready job has waited."""
    dead: int | None = None
    unknown_effects: int | None = None
    paused: str | None = None
    """The kill switch's reason, when on (only meaningful when ``dead`` was read)."""
    failing: dict[str, int] | None = None
    """Adapter → effects that failed within the window."""
    streams_down: dict[str, tuple[float, str]] | None = None
    """Stream (query id, ``*`` for the account's) → since when it has been down, and why."""
    unreachable: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Backend (``store``, ``queue``) → since when it has not answered, and the error."""


class Watch:
    """Readings in, incidents out (``key → summary``)."""

    def __init__(self, *, lag_threshold: float, window: float, hold_for: float) -> None:
        self.lag_threshold = lag_threshold
        self.window = window
        self.hold_for = hold_for
        self._dead: deque[tuple[float, int]] = deque()
        self._refused: deque[tuple[float, int]] = deque()
        self._last: dict[str, str] = {}

    def reset(self) -> None:
        """Forget earlier readings: growth is measured afresh from the next one."""
        self._dead.clear()
        self._last = {}

    def refusing(self, at: float, refused: int) -> str | None:
        """This process's incident when its webhook answered ``503`` (``refused`` counts them
        since it started) within ``hold_for``; ``None`` otherwise."""
        if _growth(self._refused, at, refused, self.hold_for) <= 0:
            return None
        return (
            "the webhook is answering 503 (the store is down or too slow): Auto's deliveries"
            " are being refused"
        )

    def incidents(self, health: Health) -> dict[str, str]:
        """The incidents firing at ``health.at``."""
        found: dict[str, str] = {}
        kept = self._carried(health)
        found.update(kept)
        at = health.at
        if health.lag is not None and health.lag > self.lag_threshold:
            found["lag"] = (
                f"queue lag {health.lag:.0f}s is over LAG_THRESHOLD ({self.lag_threshold:g}s):"
                " workers are not keeping up"
            )
        if health.dead is not None:
            grew = _growth(self._dead, at, health.dead, self.window)
            if grew > 0:
                found["dead_letters"] = (
                    f"{grew} event(s) dead-lettered in the last {_span(self.window)}"
                    f" ({health.dead} in the dead letters): autorunner dlq list"
                )
        if health.unknown_effects:
            found["unknown_effects"] = (
                f"{health.unknown_effects} effect(s) in unknown, each waiting for an operator:"
                " autorunner effects list --status unknown"
            )
        if health.paused is not None:
            found["paused"] = f"the kill switch is on ({health.paused}): no effect is performed"
        for adapter, count in sorted((health.failing or {}).items()):
            found[f"adapter:{adapter}"] = (
                f"the {adapter} adapter failed {count} effect(s) in the last {_span(self.window)}"
            )
        for name, (since, error) in sorted((health.streams_down or {}).items()):
            if at - since >= self.hold_for:
                found[f"stream:{name}"] = (
                    f"the Auto stream {name} has been down for {_span(at - since)} ({error})"
                )
        for name, (since, error) in sorted(health.unreachable.items()):
            if at - since >= self.hold_for:
                found[f"unreachable:{name}"] = (
                    f"the {name} has not answered for {_span(at - since)}: {error}"
                )
        self._last = found
        return found

    def _carried(self, health: Health) -> dict[str, str]:
        """Incidents from the last reading about what this one could not read."""
        unread = {
            "lag": health.lag is None,
            "dead_letters": health.dead is None,
            "unknown_effects": health.unknown_effects is None,
            "paused": health.dead is None,
            "adapter:": health.failing is None,
            "stream:": health.streams_down is None,
        }
        return {
            key: summary
            for key, summary in self._last.items()
            if any(key.startswith(prefix) and gone for prefix, gone in unread.items())
        }


def _growth(seen: deque[tuple[float, int]], at: float, value: int, window: float) -> int:
    """How much a counter grew within ``window`` before ``at`` (its first reading is the
    baseline: what was there before the watch began is not news)."""
    seen.append((at, value))
    while len(seen) > 1 and seen[1][0] <= at - window:
        seen.popleft()
    return value - seen[0][1]


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
