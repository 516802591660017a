"""How one event's line reads on a terminal."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from autorunner.human_log import HumanRenderer, drop_chatter


def render(colors: bool = False, debug: bool = False, **fields: Any) -> str:
    line = {"timestamp": "2026-12-05T16:20:01.123Z", "level": "info", **fields}
    return HumanRenderer(colors=colors, debug=debug)(None, "info", line)


def test_a_finished_event_is_time_mark_title_route_effects_and_milliseconds() -> None:
    line = render(
        event="job.done",
        event_id="e-1",
        title="BTC price alert",
        route="default",
        effects=["telegram:done", "http:done"],
        denied=[],
        ms=42.0,
    )
    assert line == "16:20:01  ✓ BTC price alert          default    telegram ✓  http ✓  42 ms"


@pytest.mark.parametrize(
    ("effects", "denied", "shown"),
    [
        (["http:unknown"], [], "http ?"),
        (["telegram:over_budget"], [], "telegram ⊘"),
        (["notify:done"], ["exchange (over max_notional_usd)"], "denied exchange (over"),
    ],
)
def test_unknown_over_budget_and_denied_turn_the_mark_into_a_warning(
    effects: list[str], denied: list[str], shown: str
) -> None:
    line = render(event="job.done", title="t", route="r", effects=effects, denied=denied, ms=1)
    assert "  ⚠ t " in line
    assert shown in line


def test_a_retry_says_which_attempt_comes_next_and_why_in_yellow() -> None:
    line = render(
        colors=True,
        event="job.retry",
        title="t",
        route="r",
        effects=["http:failed"],
        denied=[],
        ms=3,
        attempt=1,
        delay=0.4,
        error="TransientError: HTTP 503",
    )
    assert line.startswith("\x1b[33m")
    assert "↻ t" in line
    assert "http ✗  retry 2 in 0.4s: TransientError: HTTP 503" in line


def test_other_lines_hide_ids_unless_debug_or_a_warning() -> None:
    quiet = render(event="effect.notify", event_id="e-1", text="hello there")
    assert quiet == "16:20:01  effect.notify  text='hello there'"
    assert "event_id=e-1" in render(debug=True, event="effect.notify", event_id="e-1")
    warned = render(event="effect.unknown", level="warning", event_id="e-1")
    assert warned == "16:20:01  ⚠ effect.unknown  event_id=e-1"


def test_per_event_chatter_is_dropped_unless_debug() -> None:
    line = {"event": "event.accepted", "event_id": "e-1"}
    with pytest.raises(structlog.DropEvent):
        drop_chatter(debug=False)(None, "info", dict(line))
    assert drop_chatter(debug=True)(None, "info", dict(line)) == line
    assert drop_chatter(debug=False)(None, "info", {"event": "job.done"}) == {"event": "job.done"}
