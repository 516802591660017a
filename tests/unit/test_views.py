"""The human views and the CLI's time and limit readers (pure)."""

from __future__ import annotations

import pytest

from autorunner import views
from autorunner.cli import tools
from autorunner.records import EventDetail, EventSummary, Operation, RunRecord
from tests.helpers import make_event, raw_delivery

LONG_ID = "evt-" + "x" * 70


def summary(event_id: str = LONG_ID, **extra: object) -> EventSummary:
    fields: dict[str, object] = {
        "event_id": event_id,
        "execution_id": "exec-1",
        "query_id": "q-1",
        "event_type": "query.triggered",
        "channel": "webhook",
        "status": "done",
        "attempts": 1,
        "received_at": 1_700_000_000.0,
        "finished_at": 1_700_000_001.0,
        "last_error": None,
        "route": "btc",
        "effects": {"unknown": 1, "done": 2},
    }
    fields.update(extra)
    return EventSummary(**fields)  # type: ignore[arg-type]


def test_events_list_keeps_whole_ids_and_shows_route_and_effects() -> None:
    header, row = views.event_rows([summary()])
    assert header.split()[:4] == ["EVENT", "ID", "STATUS", "ROUTE"]
    assert LONG_ID in row
    assert "btc" in row
    assert "2 done, 1 unknown" in row
    assert "2023-11-14 22:13:20" in row


def detail() -> EventDetail:
    run = RunRecord(
        event_id=LONG_ID,
        attempt=1,
        outcome="done",
        started_at=1.0,
        finished_at=1.0125,
        route="btc",
        decision={
            "decider": "rules",
            "version": "rules/1",
            "rationale": "rule 1 of route 'btc'",
            "policy_hash": "sha256:abcd",
            "actions": [],
        },
        verdict={
            "allowed": [{"step_id": "tell", "kind": "telegram", "params": {"chat": "desk"}}],
            "denied": [
                {
                    "action": {"step_id": "order", "kind": "http", "params": {}},
                    "reason": "notional 100000 USD exceeds the route's cap of 500 USD",
                }
            ],
        },
    )
    return EventDetail(
        summary=summary(),
        event=make_event(LONG_ID, symbol="BTC"),
        raw=raw_delivery(),
        runs=[run],
        effects=[
            {
                "effect_key": f"{LONG_ID}:tell",
                "kind": "telegram",
                "status": "unknown",
                "tries": 1,
                "result": None,
            }
        ],
        dead_reason=None,
        operations=[Operation(at=1_700_000_100.0, actor="ops@host", action="events.rerun")],
    )


def test_events_show_tells_route_decision_verdict_effects_and_operators() -> None:
    text = "\n".join(views.event_detail(detail()))
    assert f"event {LONG_ID}: done" in text
    assert "route      btc   policy sha256:abcd" in text
    assert "decided by rules/1" in text
    assert "rationale  rule 1 of route 'btc'" in text
    assert 'allowed    tell (telegram) {"chat":"desk"}' in text
    assert "denied     order (http): notional 100000 USD exceeds the route's cap of 500 USD" in text
    assert f"autorunner effects resolve {LONG_ID}:tell --sent | --resend" in text
    assert "UNKNOWN" in text
    assert "#1 done in 12.5 ms" in text
    assert "ops@host: events.rerun" in text
    assert "{'" not in text  # no Python reprs


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1h", 10_000.0 - 3600),
        ("30m", 10_000.0 - 1800),
        ("2d", 10_000.0 - 172_800),
        ("1.5h", 10_000.0 - 5400),
        ("45s", 10_000.0 - 45),
        ("1700000000", 1_700_000_000.0),
        ("2026-04-01T12:00:00Z", 1_775_044_800.0),
        ("2026-04-01T12:00:00", 1_775_044_800.0),
    ],
)
def test_times_are_read_relative_iso_or_epoch(given: str, expected: float) -> None:
    assert tools.instant(given, option="--since", now=10_000.0) == expected


def test_an_unreadable_time_or_window_or_limit_is_a_usage_error() -> None:
    with pytest.raises(tools.UsageError, match="--since: cannot read 'yesterday'"):
        tools.instant("yesterday", option="--since")
    with pytest.raises(tools.UsageError, match="must be later than --since"):
        tools.window("1h", "2h")
    with pytest.raises(tools.UsageError, match="--limit must be at least 1, got 0"):
        tools.limit(0)


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [views.ago(s) for s in (None, 4, 250, 11_100, 190_000)] == [
        "-",
        "4s",
        "4m10s",
        "3h05m",
        "2d04h",
    ]


@pytest.mark.parametrize(
    "verdict",
    [
        {"allowed": [], "denied": [], "policy_hash": "h", "refused": "invalid decision: junk"},
        # As runners before the typed verdict recorded it: a placeholder action denied.
        {
            "allowed": [],
            "denied": [
                {
                    "action": {"step_id": "-", "kind": "-", "params": {}},
                    "reason": "invalid decision: junk",
                }
            ],
            "policy_hash": "h",
        },
    ],
)
def test_an_invalid_decision_shows_why_in_either_recorded_shape(verdict: dict[str, object]) -> None:
    run = RunRecord(
        event_id="e1",
        attempt=1,
        outcome="done",
        started_at=0.0,
        finished_at=1.0,
        route="btc",
        decision={"invalid": "junk", "decider": "llm", "trace": {}, "policy_hash": "h"},
        verdict=verdict,
    )
    shown = "\n".join(views.decision_lines(run))
    assert "INVALID    junk" in shown
    assert "invalid decision: junk" in shown
    assert "allowed    nothing" in shown
