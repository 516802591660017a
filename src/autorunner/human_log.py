"""The log a person at a terminal reads: one short line per event, in the style of
``stripe listen``::

    16:20:01  ✓ BTC price alert      default   telegram ✓  http ✓           42 ms
    16:20:02  ⚠ ETH breakout         risky     denied exchange (over max_notional_usd)  12 ms
    16:20:03  ↻ SOL price alert      default   http ✗  retry 2 in 0.4s: HTTP 503

The worker puts what the line needs on its ``job.*`` log lines (``run_fields``), so JSON lines
carry the same facts as extra keys and are otherwise unchanged. On a terminal the per-event
chatter (accepted, duplicate, skipped…) shows only with ``LOG_LEVEL=debug``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from autorunner.events import Event
from autorunner.records import RunRecord

MARKS = {"done": "✓", "failed": "✗", "unknown": "?", "over_budget": "⊘", "planned": "…"}
CHATTER = frozenset(
    {
        "event.accepted",
        "event.duplicate",
        "effect.skipped",
        "job.released",
        "facts.from_delivery",
    }
)
"""Per-event lines a terminal shows only at debug (the event's own line says it all)."""
JOB_LINES = {"job.done": "✓", "job.retry": "↻", "job.dead_letter": "✗", "job.held": "⏸"}
TITLE_WIDTH = 24
IDS = frozenset({"event_id", "effect_key", "execution_id", "policy_hash", "query_id"})
"""Shown on a terminal only at debug, or on a warning or an error."""
PLAIN = frozenset({"event", "timestamp", "level", "exception"})


def run_fields(event: Event, record: RunRecord) -> dict[str, Any]:
    """What one event's line shows: its title, route, each effect's outcome, what was denied
    and the attempt's time."""
    verdict = record.verdict or {}
    denied = [
        f"{entry['action'].get('kind', '?')} ({entry['reason'][:200]})"
        for entry in verdict.get("denied", [])
    ]
    if verdict.get("refused"):
        denied.append(str(verdict["refused"])[:200])
    return {
        "title": event.title or event.symbol or event.event_type,
        "route": record.route,
        "effects": [f"{e['kind']}:{e['status']}" for e in record.effects],
        "denied": denied,
        "ms": round((record.finished_at - record.started_at) * 1000, 1),
    }


def drop_chatter(debug: bool) -> structlog.typing.Processor:
    """A processor leaving out ``CHATTER`` unless the log level is debug."""

    def processor(
        _: object, __: str, event_dict: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        if not debug and event_dict.get("event") in CHATTER:
            raise structlog.DropEvent
        return event_dict

    return processor


class HumanRenderer:
    """Renders an event's ``job.*`` line as one short line, and every other line compactly:
    the time, a mark for a warning or error, the event, then its values (ids only at debug, or
    on a warning or an error)."""

    def __init__(self, *, colors: bool, debug: bool = False) -> None:
        self._colors = colors
        self._debug = debug

    def __call__(self, logger: Any, name: str, event_dict: structlog.typing.EventDict) -> str:
        mark = JOB_LINES.get(str(event_dict.get("event")))
        if mark is not None and "effects" in event_dict:
            return self._line(mark, event_dict)
        return self._other(event_dict)

    def _other(self, fields: Mapping[str, Any]) -> str:
        level = str(fields.get("level", "info"))
        loud = level in ("warning", "error", "critical")
        shown = [
            f"{key}={value!r}" if isinstance(value, str) and " " in value else f"{key}={value}"
            for key, value in fields.items()
            if key not in PLAIN and (self._debug or loud or key not in IDS)
        ]
        mark = {"warning": "⚠ ", "error": "✗ ", "critical": "✗ "}.get(level, "")
        text = f"{str(fields.get('timestamp', ''))[11:19]}  {mark}{fields.get('event')}"
        if shown:
            text += "  " + " ".join(shown)
        if "exception" in fields:
            text += "\n" + str(fields["exception"])
        if not loud:
            return text
        return self._paint(text, "\x1b[33m" if level == "warning" else "\x1b[31m")

    def _paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}\x1b[0m" if self._colors else text

    def _line(self, mark: str, fields: Mapping[str, Any]) -> str:
        effects = [_effect(text) for text in fields.get("effects", [])]
        denied = [f"denied {d}" for d in fields.get("denied", [])]
        warn = denied or any(e.endswith(("?", "⊘")) for e in effects)
        if mark == "✓" and warn:
            mark = "⚠"
        tail = ""
        if fields["event"] == "job.retry":
            tail = f"retry {fields.get('attempt', 0) + 1} in {fields.get('delay')}s: {fields.get('error')}"
        elif fields["event"] == "job.dead_letter":
            tail = f"dead-lettered: {fields.get('reason')}"
        elif fields["event"] == "job.held":
            tail = f"held: {fields.get('reason')}"
        middle = "  ".join([*effects, *denied, tail] if tail else [*effects, *denied]) or "-"
        title = str(fields.get("title") or fields.get("event_id"))
        if len(title) > TITLE_WIDTH:
            title = title[: TITLE_WIDTH - 1] + "…"
        time = str(fields.get("timestamp", ""))[11:19]
        text = (
            f"{time}  {mark} {title:<{TITLE_WIDTH}} {fields.get('route') or '-':<10} {middle}"
            f"  {fields.get('ms', 0):g} ms"
        )
        if mark in ("⚠", "↻", "⏸"):
            return self._paint(text, "\x1b[33m")
        return self._paint(text, "\x1b[31m") if mark == "✗" else text


def _effect(text: str) -> str:
    kind, _, status = text.rpartition(":")
    return f"{kind} {MARKS.get(status, status)}"
