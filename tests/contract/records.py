"""Records the contract suites build: a finished run and an effect intent."""

from __future__ import annotations

from autorunner.records import EffectIntent, RunRecord


def run(
    event_id: str, attempt: int = 1, outcome: str = "done", error: str | None = None
) -> RunRecord:
    return RunRecord(
        event_id=event_id,
        attempt=attempt,
        outcome=outcome,  # type: ignore[arg-type]
        started_at=0.0,
        finished_at=1.0,
        error=error,
    )


def intent(event_id: str = "evt-1", step: str = "notify") -> EffectIntent:
    return EffectIntent(
        effect_key=f"{event_id}:{step}",
        event_id=event_id,
        step_id=step,
        kind="notify",
        params={"text": "hi"},
    )
