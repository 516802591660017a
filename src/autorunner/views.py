"""What people read: events, effects and status as plain lines (pure).

No Python reprs, no ids cut short: a value is text, a number or compact JSON; long free text
(an adapter's result, an error) is shortened with ``…`` and is whole in ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from autorunner.decision import Verdict
from autorunner.records import EventDetail, EventSummary, Operation, RejectedView, RunRecord
from autorunner.replay import Replayed

UNKNOWN_HINT = "may have been sent; settle it: autorunner effects resolve {key} --sent | --resend"
EFFECT_ORDER = ("done", "planned", "pending", "unknown", "failed")


def when(ts: float | None) -> str:
    """A UTC time to the second, ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float | None) -> str:
    """``12s``, ``4m10s``, ``3h05m``, ``2d04h``; ``-`` for none."""
    if seconds is None:
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


PRINT_DEPTH = 64


def dumps(value: Any, *, indent: bool = False) -> str:
    """JSON for people and scripts that never fails on what a record holds: a record stored
    before nesting was bounded is cut at ``PRINT_DEPTH`` levels, odd values become text."""
    option = orjson.OPT_INDENT_2 if indent else 0
    try:
        return orjson.dumps(value, default=str, option=option).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_printable(value, PRINT_DEPTH), default=str, option=option).decode()


def _printable(value: Any, depth: int) -> Any:
    if isinstance(value, dict | list | tuple) and depth <= 0:
        return f"… nested deeper than {PRINT_DEPTH} levels"
    if isinstance(value, dict):
        return {str(key): _printable(item, depth - 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item, depth - 1) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


def text(value: Any, limit: int = 160) -> str:
    """A value as one line: strings as they are, everything else as compact JSON."""
    shown = value if isinstance(value, str) else dumps(value)
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def columns(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Aligned columns; nothing is truncated, the last column runs on."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in table
    ]


def effects_summary(counts: Mapping[str, int]) -> str:
    """``2 done, 1 unknown``; ``-`` when the event has none."""
    order = [s for s in EFFECT_ORDER if s in counts] + sorted(set(counts) - set(EFFECT_ORDER))
    return ", ".join(f"{counts[s]} {s}" for s in order) or "-"


def event_rows(events: Iterable[EventSummary]) -> list[str]:
    """``events list``."""
    return columns(
        ["EVENT ID", "STATUS", "ROUTE", "EFFECTS", "RECEIVED (UTC)", "CHANNEL", "QUERY", "ERROR"],
        (
            [
                e.event_id,
                e.status if e.attempts <= 1 else f"{e.status} ({e.attempts} attempts)",
                e.route or "-",
                effects_summary(e.effects),
                when(e.received_at),
                e.channel,
                e.query_id or "-",
                text(e.last_error, 120) if e.last_error else "",
            ]
            for e in events
        ),
    )


def event_detail(detail: EventDetail) -> list[str]:
    """``events show``: what arrived, how it was decided, what happened, who intervened."""
    s, e = detail.summary, detail.event
    delivered = f" (delivery id {e.delivery_id})" if e.delivery_id else ""
    lines = [
        f"event {s.event_id}: {s.status}  (attempts {s.attempts}, decision generation {detail.generation})",
        f"  received   {when(s.received_at)} UTC by {s.channel}{delivered}; finished"
        f" {when(s.finished_at)}; {s.duplicates} more deliveries recognised as duplicates",
        f"  query      {e.query_id or '-'}   execution {e.execution_id or '-'}",
    ]
    decided = next((r.envelope for r in reversed(detail.runs) if r.envelope), None)
    trigger = (decided or {}).get("trigger") or {
        "eventType": e.event_type,
        "status": e.status,
        "symbol": e.symbol,
        "title": e.title,
        "body": e.body,
    }
    label = "decided on" if decided else "trigger   "
    lines.append(
        f"  {label} {trigger.get('eventType')}, status {trigger.get('status') or '-'},"
        f" symbol {trigger.get('symbol') or '-'}"
    )
    if trigger.get("title") or trigger.get("body"):
        body = trigger.get("body")
        lines.append(
            f"  text       {text(trigger.get('title') or '')}{' — ' + text(body) if body else ''}"
        )
    if detail.dead_reason:
        lines.append(f"  DEAD       {text(detail.dead_reason)}")
    last = next((r for r in reversed(detail.runs) if r.verdict is not None), None)
    if last is not None:
        lines += decision_lines(last)
    lines += effect_lines(detail.effects)
    lines += run_lines(detail.runs)
    lines += operation_lines(detail.operations)
    return lines


def decision_lines(run: RunRecord) -> list[str]:
    """The route, decision, rationale and verdict of one run."""
    decision, verdict = run.decision or {}, Verdict.from_dict(run.verdict or {})
    who = decision.get("version") or decision.get("decider") or "-"
    lines = [
        f"  route      {run.route or '-'}   policy {decision.get('policy_hash', '-')}",
        f"  decided by {who}{' (pinned decision reused)' if decision.get('reused') else ''}",
    ]
    if decision.get("invalid"):
        lines.append(f"  INVALID    {text(decision['invalid'])}")
    if decision.get("rationale"):
        lines.append(f"  rationale  {text(decision['rationale'], 300)}")
    usage = (decision.get("trace") or {}).get("usage")
    if usage:
        lines.append(
            f"  model      {usage.get('requests')} request(s),"
            f" {usage.get('input_tokens')} tokens in, {usage.get('output_tokens')} out"
        )
    if verdict.refused:
        lines.append(f"  REFUSED    {text(verdict.refused)}")
    lines.append(
        "  allowed    "
        + (
            ", ".join(f"{a.step_id} ({a.kind}) {text(a.params, 100)}" for a in verdict.allowed)
            or "nothing"
        )
    )
    lines += [
        f"  denied     {d.action.step_id} ({d.action.kind}): {d.reason}" for d in verdict.denied
    ]
    return lines


def effect_lines(effects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each effect with its ledger status; an ``unknown`` one says what to do about it."""
    if not effects:
        return ["  effects    none"]
    lines = []
    for n, effect in enumerate(effects):
        head = "  effects    " if n == 0 else "             "
        status = str(effect["status"])
        line = f"{head}{effect['effect_key']}  {effect['kind']}  {status.upper() if status == 'unknown' else status}  tries {effect['tries']}"
        if status == "unknown":
            line += "  — " + UNKNOWN_HINT.format(key=effect["effect_key"])
        elif effect.get("result") is not None:
            line += f"  {text(effect['result'], 100)}"
        lines.append(line)
    return lines


def run_lines(runs: Sequence[RunRecord]) -> list[str]:
    """One line per attempt: outcome, time taken, error."""
    lines = []
    for n, run in enumerate(runs):
        head = "  runs       " if n == 0 else "             "
        took = round((run.finished_at - run.started_at) * 1000, 1)
        generation = f" (generation {run.generation})" if run.generation > 1 else ""
        line = f"{head}#{run.attempt}{generation} {run.outcome} in {took} ms"
        if run.retry_delay is not None:
            line += f", retry in {run.retry_delay:g}s"
        if run.error:
            line += f": {text(run.error, 200)}"
        lines.append(line)
    return lines


def operation_lines(operations: Sequence[Operation]) -> list[str]:
    """What operators did to the event."""
    lines = []
    for n, op in enumerate(operations):
        head = "  operator   " if n == 0 else "             "
        target = f" {op.target}" if op.target else ""
        detail = f" {text(op.detail, 120)}" if op.detail else ""
        lines.append(f"{head}{when(op.at)} UTC {op.actor}: {op.action}{target}{detail}")
    return lines


def effect_rows(effects: Iterable[Mapping[str, Any]]) -> list[str]:
    """``effects list``."""
    return columns(
        ["EFFECT KEY", "KIND", "STATUS", "TRIES", "UPDATED (UTC)", "RESULT"],
        (
            [
                str(e["effect_key"]),
                str(e["kind"]),
                str(e["status"]),
                str(e["tries"]),
                when(e["updated_at"]),
                "" if e.get("result") is None else text(e["result"], 100),
            ]
            for e in effects
        ),
    )


def status_lines(status: Mapping[str, Any]) -> list[str]:
    """``autorunner status`` for a person: what runs, what waits, what needs a person."""
    workers = status["workers"]
    alive = [w for w in workers if w["alive"]]
    lines = [f"autorunner ({status['mode']} mode)"]
    if status["paused"]:
        lines.append(
            f"  PAUSED       {status['paused']}: no effect begins; events wait (autorunner resume)"
        )
    else:
        lines.append("  paused       no")
    lines.append(
        f"  workers      {len(alive)} alive"
        + (f", {len(workers) - len(alive)} silent" if len(workers) > len(alive) else "")
    )
    lines += [
        f"               {w['name']} ({w['role']}): heartbeat {ago(w['heartbeat_age_seconds'])} ago,"
        f" up {ago(w['up_seconds'])}, {w['in_flight']} in flight"
        + ("" if w["alive"] else "  — SILENT: died or stalled?")
        for w in workers
    ]
    lag = status["oldest_pending_age_seconds"]
    lines.append(
        f"  queue        {status['queue_depth']} waiting ({status['ready']} ready),"
        f" {status['in_flight']} in flight; oldest ready {ago(lag)}"
        f" ({'LAGGING' if status['lagging'] else 'within'} the {status['lag_threshold_seconds']:g}s"
        " threshold)"
    )
    counts = status["events"]
    lines.append(
        "  events       "
        + (
            ", ".join(
                f"{counts[k]} {k}" for k in ("done", "pending", "running", "dead") if k in counts
            )
            or "none"
        )
        + f"; {status['duplicates']} duplicate deliveries recognised"
    )
    if status["lapsed_leases"]:
        lines.append(
            f"  leases       {status['lapsed_leases']} lapsed: their worker died or stalled; the"
            " sweeper brings them back"
        )
    if status["dead_letters"]:
        lines.append(f"  dead         {status['dead_letters']}: autorunner dlq list")
    if status["unknown_effects"]:
        lines.append(
            f"  UNKNOWN      {status['unknown_effects']} effect(s) may have been sent:"
            " autorunner effects list --status unknown"
        )
    if status["rejected_deliveries"]:
        lines.append(
            f"  rejected     {status['rejected_deliveries']} authentic deliveries kept:"
            " autorunner rejected list"
        )
    if status.get("approvals_pending"):
        lines.append(
            f"  approvals    {status['approvals_pending']} waiting for a person:"
            " autorunner approvals list --status pending"
        )
    for spend in status.get("llm_spend_today", []):
        lines.append(
            f"  llm spend    {spend['scope']} today: {spend['spent_usd']:.4f} USD,"
            f" {spend['spent_tokens']} tokens"
            + (f" ({spend['reserved_usd']:.4f} USD reserved)" if spend["reserved_usd"] else "")
        )
    hour = status.get("last_hour", {})
    for kind, label in (("runs", "runs"), ("refused", "refused")):
        counted = hour.get(kind) or {}
        lines.append(
            f"  {label:<12} last hour: "
            + (", ".join(f"{n} {what}" for what, n in counted.items()) or "none")
        )
    return lines


def rejected_rows(rejected: Iterable[RejectedView]) -> list[str]:
    """``rejected list``."""
    return columns(
        ["ID", "RECEIVED (UTC)", "REASON", "BODY"],
        ([str(r.id), when(r.received_at), r.reason, text(r.body, 120)] for r in rejected),
    )


def verdict_line(verdict: Verdict | None) -> str:
    """A verdict on one line: what it allows, what it denies and why, or why it was refused."""
    if verdict is None:
        return "(no recorded decision)"
    allowed = ", ".join(f"{a.step_id}:{a.kind}" for a in verdict.allowed) or "nothing"
    denied = "; ".join(f"{d.action.step_id} ({d.reason})" for d in verdict.denied)
    refused = f"; refused: {verdict.refused}" if verdict.refused else ""
    return f"allowed {allowed}" + (f"; denied {denied}" if denied else "") + refused


def replayed_lines(result: Replayed, policy_hash: str) -> list[str]:
    """``replay EVENT_ID``: the change, and the verdict before and after."""
    return [
        f"{result.event_id}: {result.change} (route {result.route}, policy {policy_hash})",
        f"  before: {verdict_line(result.before)}",
        f"  after:  {verdict_line(result.after)}",
    ]


def replay_summary_lines(
    policy_hash: str, counts: Mapping[str, int], differences: Sequence[Replayed]
) -> list[str]:
    """``replay --since``: how many of each change, then every event that changed."""
    total = sum(counts.values())
    return [
        f"replayed {total} event(s) under policy {policy_hash}: "
        f"{counts['unchanged']} unchanged, {counts['changed']} changed, "
        f"{counts['newly_denied']} newly denied, {counts['newly_allowed']} newly allowed, "
        f"{counts['no_record']} never decided",
        *(
            f"  {r.event_id}: {r.change}  before: {verdict_line(r.before)}"
            f"  after: {verdict_line(r.after)}"
            for r in differences
        ),
    ]
